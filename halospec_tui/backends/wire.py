"""The timed request: one keep-alive stdlib HTTP/1.1 connection per server.

Every step's latency is the wall time of one POST, so whatever the client does inside that
window is measured as if the server had done it. httpx (kept for everything untimed: health,
metrics, reloads) adds about 0.9 ms to a chat POST over `http.client` with the body written
together with its headers (`benchmarks/http_clients_llamacpp.py`, llama-server, 240 requests
per client, interleaved: gap over the server's own timings 2.91 ms with httpx, 2.33 ms with
httpcore, 2.00 ms with http.client). So the timed path is `http.client`, the least a Python
client can do; docs/servers.md has the numbers.

Plain `http://` only, and only where no proxy applies: HTTPS and proxied URLs (remote
OpenAI-compatible services) keep going through httpx, which knows TLS settings and proxies.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

# Failures that mean "the kept-alive connection had been closed by the server while idle":
# the request never reached a live peer, so sending it once more on a fresh connection is
# what every HTTP client does (urllib3, httpcore).
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True)
class Posted:
    """A reply: status, body, and the wall time of the round trip that produced it."""

    status: int
    body: bytes
    latency_ms: float


class WireError(Exception):
    """The request got no HTTP reply; `timeout` says whether it ran out of time."""

    def __init__(self, text: str, timeout: bool = False) -> None:
        super().__init__(text)
        self.timeout = timeout


def direct_http(url: str) -> bool:
    """Whether `url` can take the fast path: plain http, and no proxy configured for it."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    proxies = urllib.request.getproxies()
    if "http" not in proxies and "all" not in proxies:
        return True
    return bool(urllib.request.proxy_bypass(parts.hostname))


class Poster:
    """POSTs over one kept-alive connection per host:port; thread-safe, one request at a time.

    The connection is opened before the clock starts, so a step's latency never includes a
    TCP connect. `timeout_s` bounds connecting and every socket read.
    """

    def __init__(self, headers: dict[str, str], timeout_s: float, connect_timeout_s: float):
        self._headers = {"Content-Type": "application/json", **headers}
        self._timeout = timeout_s
        self._connect_timeout = connect_timeout_s
        self._conns: dict[str, http.client.HTTPConnection] = {}
        self._lock = threading.Lock()

    def post(self, url: str, payload: bytes) -> Posted:
        parts = urllib.parse.urlsplit(url)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        with self._lock:
            conn, reused = self._open(parts.netloc)
            try:
                try:
                    return self._round_trip(conn, path, payload)
                except _STALE:
                    if not reused:
                        raise
                    self._drop(parts.netloc)
                    conn, _ = self._open(parts.netloc)
                    return self._round_trip(conn, path, payload)
            except (OSError, http.client.HTTPException) as e:
                self._drop(parts.netloc)
                raise _wire_error(e, self._timeout) from e
            except BaseException:
                self._drop(parts.netloc)
                raise

    def close(self) -> None:
        with self._lock:
            for netloc in list(self._conns):
                self._drop(netloc)

    # --- internals -------------------------------------------------------------------------

    def _open(self, netloc: str) -> tuple[http.client.HTTPConnection, bool]:
        """The connection for `netloc`, and whether it is a kept-alive one being reused."""
        conn = self._conns.get(netloc)
        if conn is not None and conn.sock is not None:
            return conn, True
        conn = http.client.HTTPConnection(netloc, timeout=self._connect_timeout)
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise _wire_error(e, self._connect_timeout, connecting=True) from e
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock.settimeout(self._timeout)
        self._conns[netloc] = conn
        return conn, False

    def _drop(self, netloc: str) -> None:
        conn = self._conns.pop(netloc, None)
        if conn is not None:
            conn.close()

    def _round_trip(self, conn: http.client.HTTPConnection, path: str, payload: bytes) -> Posted:
        t0 = time.perf_counter()
        conn.request("POST", path, payload, self._headers)
        resp = conn.getresponse()
        body = resp.read()
        latency_ms = (time.perf_counter() - t0) * 1000.0
        if resp.will_close:
            conn.close()  # the server said Connection: close; reopen before the next clock
        return Posted(resp.status, body, latency_ms)


def _wire_error(
    e: OSError | http.client.HTTPException, timeout_s: float, connecting: bool = False
) -> WireError:
    """One line for a network failure, named like httpx names its errors."""
    if isinstance(e, TimeoutError):
        what = "connect timeout" if connecting else "timeout"
        return WireError(f"{what} after {timeout_s:g} s", timeout=True)
    name = "ConnectError" if connecting else e.__class__.__name__
    return WireError(f"{name}: {e or e.__class__.__name__}")
