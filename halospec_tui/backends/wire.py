"""The timed request: one keep-alive stdlib HTTP/1.1 connection per server, bounded in time
and size, and stoppable from any thread.

Every step's latency is the wall time of one POST, so whatever the client does inside that
window is measured as if the server had done it. httpx (kept for everything untimed: health,
metrics, reloads) adds about 0.9 ms to a chat POST over `http.client` with the body written
together with its headers (`benchmarks/http_clients_llamacpp.py`, llama-server, 240 requests
per client, interleaved: gap over the server's own timings 2.91 ms with httpx, 2.33 ms with
httpcore, 2.00 ms with http.client). So the timed path is `http.client`, the least a Python
client can do; docs/servers.md has the numbers.

Plain `http://` only, and only where no proxy applies: HTTPS and proxied URLs (remote
OpenAI-compatible services) keep going through httpx (`post_httpx`), which knows TLS settings
and proxies.

Both paths give a request a total deadline (connect + send + the whole reply), a cap on the
reply's size, and an abort. A socket timeout bounds each read, not the request: a server that
drips its reply a byte a second would hold a step for ever. So a `Guard` keeps the sockets of
the request in flight and shuts them down (which wakes a thread blocked on them at once,
where closing would not) when the deadline passes (one watchdog thread per backend) or when
`abort()` is called from another thread (the run was stopped). Reads are recorded with their
arrival times, so a streamed reply's events can be timed after the clock has stopped.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import socket
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from halospec_tui.backends.base import INTERRUPTED

# Failures that mean "the kept-alive connection had been closed by the server while idle":
# the request never reached a live peer, so sending it once more on a fresh connection is
# what every HTTP client does (urllib3, httpcore).
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_READ = 65536  # most bytes taken per read; a read returns what has arrived


@dataclass(frozen=True)
class Posted:
    """A reply: status, body, the wall time of the round trip that produced it, and when its
    bytes arrived: `marks[i]` = (ms after the request was sent, body bytes received by then)."""

    status: int
    body: bytes
    latency_ms: float
    marks: tuple[tuple[float, int], ...] = ()
    content_type: str = ""
    retry_after: str | None = None


class WireError(Exception):
    """The request got no (complete) HTTP reply. `timeout`: its deadline passed;
    `interrupted`: abort() stopped it (the run is stopping; never retried)."""

    def __init__(self, text: str, timeout: bool = False, interrupted: bool = False) -> None:
        super().__init__(text)
        self.timeout = timeout
        self.interrupted = interrupted


def size_text(n: int) -> str:
    """4194304 -> '4 MiB', 1536 -> '1.5 KiB', 100 -> '100 bytes'."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def too_large(max_bytes: int) -> WireError:
    return WireError(f"reply larger than {size_text(max_bytes)} (request.max_reply_bytes)")


def direct_http(url: str) -> bool:
    """Whether `url` can take the fast path: plain http, and no proxy configured for it."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    proxies = urllib.request.getproxies()
    if "http" not in proxies and "all" not in proxies:
        return True
    return bool(urllib.request.proxy_bypass(parts.hostname))


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date); None if unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


# --- the guard: deadline and abort ----------------------------------------------------------


def _shutdown(sock: Any) -> None:
    # not connected yet, or already closed: then nothing is blocked on it
    with contextlib.suppress(OSError, ValueError):
        sock.shutdown(socket.SHUT_RDWR)


class Guard:
    """The request in flight: its deadline and its sockets. Thread-safe.

    `begin(timeout_s)` arms the deadline, `attach(sock)` adds a socket the request uses,
    `end()` disarms and says what fired ("deadline", "abort" or None). `abort()` is sticky:
    the request in flight stops now and every later one at once, so a stop that lands
    between two requests is not missed. The watchdog thread sleeps towards the earliest armed
    deadline and is woken only when it was idle, so a request costs it no context switch.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._socks: list[Any] = []
        self._deadline: float | None = None
        self._fired: str | None = None
        self._aborted = threading.Event()
        self._watching: float | None = None  # the deadline the watchdog sleeps towards
        self._thread: threading.Thread | None = None
        self._generation = 0  # close() ends the watchdog of its generation; begin() starts anew
        self._thread_generation = -1

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def begin(self, timeout_s: float) -> float:
        """Arm a deadline `timeout_s` from now (monotonic); WireError if aborted."""
        with self._cond:
            if self._aborted.is_set():
                raise WireError(INTERRUPTED, interrupted=True)
            deadline = time.monotonic() + timeout_s
            self._deadline = deadline
            self._fired = None
            self._socks = []
            if self._thread_generation != self._generation:
                self._thread_generation = self._generation
                self._watching = self._deadline
                self._thread = threading.Thread(
                    target=self._watch, args=(self._generation,), name="wire-deadline", daemon=True
                )
                self._thread.start()
            elif self._watching is None or deadline < self._watching:
                self._cond.notify()
            return deadline

    def attach(self, sock: Any) -> None:
        with self._cond:
            self._socks.append(sock)
            if self._fired is not None:
                _shutdown(sock)

    @property
    def fired(self) -> str | None:
        with self._cond:
            return self._fired

    def end(self) -> str | None:
        with self._cond:
            fired = self._fired
            self._deadline = None
            self._socks = []
            return fired

    def abort(self) -> None:
        """Stop the request in flight and refuse every later one (any thread)."""
        with self._cond:
            self._aborted.set()
            if self._deadline is not None and self._fired is None:
                self._fire("abort")

    def wait_abort(self, seconds: float) -> bool:
        """Sleep `seconds` unless aborted first; True when aborted."""
        return self._aborted.wait(max(0.0, seconds))

    def close(self) -> None:
        """End the watchdog thread (a later begin() starts another)."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def _fire(self, why: str) -> None:
        self._fired = why
        for sock in self._socks:
            _shutdown(sock)

    def _watch(self, generation: int) -> None:
        with self._cond:
            while generation == self._generation:
                if self._deadline is None or self._fired is not None:
                    self._watching = None
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left <= 0:
                    self._fire("deadline")
                    continue
                self._watching = self._deadline
                self._cond.wait(left)


def _failure(
    e: BaseException, fired: str | None, timeout_s: float, connecting: bool = False
) -> WireError:
    """One line for a failed request, named like httpx names its errors."""
    if fired == "abort":
        return WireError(INTERRUPTED, interrupted=True)
    if isinstance(e, WireError) and fired is None:
        return e
    if fired == "deadline" or isinstance(e, TimeoutError):
        what = "connect timeout" if connecting else "timeout"
        return WireError(f"{what} after {timeout_s:g} s", timeout=True)
    name = "ConnectError" if connecting else e.__class__.__name__
    return WireError(f"{name}: {e or e.__class__.__name__}")


# --- the stdlib path ------------------------------------------------------------------------


class _Connection(http.client.HTTPConnection):
    """http.client's connection, whose socket the guard sees before it connects, so the
    deadline or an abort can stop a connect that hangs (a server whose backlog is full),
    and which writes a request's headers and body in one send."""

    def __init__(self, netloc: str, timeout: float, guard: Guard) -> None:
        super().__init__(netloc, timeout=timeout)
        self._guard = guard

    def _send_output(self, message_body: Any = None, encode_chunked: bool = False) -> None:
        """Headers and body in one send (http.client sends them apart: two segments with
        TCP_NODELAY, and a server that wakes once for the headers and again for the body)."""
        if not isinstance(message_body, bytes) or encode_chunked:
            super()._send_output(message_body, encode_chunked)
            return
        self._buffer.extend((b"", b""))  # type: ignore[attr-defined]
        head = b"\r\n".join(self._buffer)  # type: ignore[attr-defined]
        del self._buffer[:]  # type: ignore[attr-defined]
        self.send(head + message_body)

    def connect(self) -> None:
        error: OSError | None = None
        for family, kind, proto, _, address in socket.getaddrinfo(
            self.host, self.port, 0, socket.SOCK_STREAM
        ):
            sock = socket.socket(family, kind, proto)
            try:
                self._guard.attach(sock)
                sock.settimeout(self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.connect(address)
            except OSError as e:
                sock.close()
                error = e
                if self._guard.fired is not None:
                    break
                continue
            self.sock = sock
            return
        raise error or OSError(f"no address for {self.host}")


def read_body(
    read1: Any, max_bytes: int, t0: float, declared: int | None = None
) -> tuple[bytes, tuple[tuple[float, int], ...]]:
    """Read a body to its end through `read1(n)`, recording when its bytes arrived."""
    if declared is not None and declared > max_bytes:
        raise too_large(max_bytes)
    parts: list[bytes] = []
    marks: list[tuple[float, int]] = []
    size = 0
    perf = time.perf_counter
    while data := read1(_READ):
        size += len(data)
        if size > max_bytes:
            raise too_large(max_bytes)
        parts.append(data)
        marks.append(((perf() - t0) * 1000.0, size))
    return b"".join(parts), tuple(marks)


class Poster:
    """POSTs over one kept-alive connection per host:port; thread-safe, one request at a time.

    The connection is opened before the clock starts, so a step's latency never includes a
    TCP connect. `timeout_s` is each request's total deadline, connecting included;
    `max_bytes` caps the reply's body.
    """

    def __init__(
        self,
        headers: dict[str, str],
        timeout_s: float,
        connect_timeout_s: float,
        max_bytes: int = 4 << 20,
        guard: Guard | None = None,
    ) -> None:
        self._headers = {"Content-Type": "application/json", **headers}
        self._timeout = timeout_s
        self._connect_timeout = connect_timeout_s
        self._max_bytes = max_bytes
        self.guard = guard or Guard()
        self._conns: dict[str, http.client.HTTPConnection] = {}
        self._lock = threading.Lock()

    def post(self, url: str, payload: bytes) -> Posted:
        parts = urllib.parse.urlsplit(url)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        netloc = parts.netloc
        with self._lock:
            self.guard.begin(self._timeout)
            connecting = True
            try:
                conn, reused = self._open(netloc)
                connecting = False
                try:
                    posted = self._round_trip(conn, path, payload)
                except _STALE:
                    if not reused or self.guard.fired is not None:
                        raise
                    self._drop(netloc)
                    connecting = True
                    conn, _ = self._open(netloc)
                    connecting = False
                    posted = self._round_trip(conn, path, payload)
                if self.guard.fired is not None:  # a body read to EOF may have been cut short
                    raise WireError("stopped")
                return posted
            except (OSError, http.client.HTTPException, WireError) as e:
                self._drop(netloc)
                raise _failure(e, self.guard.fired, self._timeout, connecting) from e
            except BaseException:
                self._drop(netloc)
                raise
            finally:
                self.guard.end()

    def abort(self) -> None:
        self.guard.abort()

    def close(self) -> None:
        with self._lock:
            for netloc in list(self._conns):
                self._drop(netloc)
        self.guard.close()

    # --- internals -------------------------------------------------------------------------

    def _open(self, netloc: str) -> tuple[http.client.HTTPConnection, bool]:
        """The connection for `netloc`, and whether it is a kept-alive one being reused."""
        conn = self._conns.get(netloc)
        if conn is not None and conn.sock is not None:
            self.guard.attach(conn.sock)
            return conn, True
        conn = _Connection(netloc, min(self._connect_timeout, self._timeout), self.guard)
        try:
            conn.connect()
        except OSError:
            conn.close()
            raise
        assert conn.sock is not None
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
        body, marks = read_body(resp.read1, self._max_bytes, t0, resp.length)
        if resp.length:  # the server closed before the Content-Length it announced
            raise http.client.IncompleteRead(body, resp.length)
        latency_ms = (time.perf_counter() - t0) * 1000.0
        resp.close()  # read to its end: the connection is free for the next request
        if resp.will_close:
            conn.close()  # the server said Connection: close; reopen before the next clock
        return Posted(
            resp.status,
            body,
            latency_ms,
            marks,
            resp.getheader("Content-Type") or "",
            resp.getheader("Retry-After"),
        )


# --- the httpx path (HTTPS, proxies) --------------------------------------------------------


class HttpxSockets:
    """The sockets an httpx client opened, learnt from httpcore's `trace` extension, so the
    guard can shut them down: httpx itself offers no way to stop a request from another
    thread. Pass `extensions={"trace": tracker.trace}` with each timed request."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self._socks: list[Any] = []
        self._lock = threading.Lock()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event not in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        with self._lock:
            self._socks = [s for s in self._socks if _open_socket(s)] + [sock]
        self.guard.attach(sock)

    def attach_all(self) -> None:
        """A request may go out on any kept-alive connection: the guard watches them all."""
        with self._lock:
            socks = [s for s in self._socks if _open_socket(s)]
            self._socks = socks
        for sock in socks:
            self.guard.attach(sock)


def _open_socket(sock: Any) -> bool:
    try:
        return sock.fileno() >= 0
    except (OSError, ValueError):
        return False


def post_httpx(
    client: Any,
    url: str,
    payload: bytes,
    headers: dict[str, str],
    *,
    timeout_s: float,
    max_bytes: int,
    sockets: HttpxSockets,
) -> Posted:
    """The timed POST through httpx: streamed, so the size cap and the deadline hold."""
    import httpx

    guard = sockets.guard
    guard.begin(timeout_s)
    try:
        sockets.attach_all()
        t0 = time.perf_counter()
        with client.stream(
            "POST", url, content=payload, headers=headers, extensions={"trace": sockets.trace}
        ) as resp:
            declared = resp.headers.get("Content-Length")
            encoded = resp.headers.get("Content-Encoding", "identity") != "identity"
            length = int(declared) if declared and declared.isdigit() and not encoded else None
            chunks = resp.iter_bytes()
            body, marks = read_body(lambda _n: next(chunks, b""), max_bytes, t0, length)
            latency_ms = (time.perf_counter() - t0) * 1000.0
            if guard.fired is not None:
                raise _failure(WireError("stopped"), guard.fired, timeout_s)
            return Posted(
                resp.status_code,
                body,
                latency_ms,
                marks,
                resp.headers.get("Content-Type", ""),
                resp.headers.get("Retry-After"),
            )
    except WireError:
        raise
    except httpx.TimeoutException as e:
        raise _failure(TimeoutError(), guard.fired, timeout_s) from e
    except (httpx.HTTPError, OSError) as e:
        raise _failure(e, guard.fired, timeout_s, isinstance(e, httpx.ConnectError)) from e
    finally:
        guard.end()
