"""A misbehaving HTTP/1.1 server on loopback: a real TCP socket whose reply to each request is
scripted, so the faults a client must survive (a drip, a huge body, a reset, a hang, a
server echoing the key) happen for real rather than being mocked.

    with FaultyServer(lambda i, req: drip(json_body(ok_reply()), 1.0)) as srv:
        ...  # srv.url, srv.seen (every request: client port, headers, body)

An action is a function `act(conn, request, stop) -> bool`: it answers on `conn` and says
whether the connection stays open for the next request.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    port: int  # the client's port: one per connection
    method: str = ""
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    at: float = 0.0  # time.monotonic() when it arrived

    def json(self) -> Any:
        return json.loads(self.body or b"null")


Action = Callable[[socket.socket, Request, threading.Event], bool]


def json_body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def reply(
    body: bytes | dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
    close: bool = False,
) -> Action:
    """A whole reply at once; `close`: then close the connection without saying so."""
    data = json_body(body) if isinstance(body, dict) else body

    def act(conn: socket.socket, req: Request, stop: threading.Event) -> bool:
        h = {"Content-Type": "application/json", "Content-Length": str(len(data))}
        conn.sendall(_head(status, {**h, **(headers or {})}) + data)
        return not close

    return act


def drop() -> Action:
    """Close the connection without answering."""
    return lambda conn, req, stop: False


def reset() -> Action:
    """Abort the connection with a TCP reset (SO_LINGER 0), no answer."""

    def act(conn: socket.socket, req: Request, stop: threading.Event) -> bool:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    return act


def hang() -> Action:
    """Read the request, never answer, keep the connection open until the server closes."""

    def act(conn: socket.socket, req: Request, stop: threading.Event) -> bool:
        stop.wait()
        return False

    return act


def sleep(seconds: float, then: Action) -> Action:
    def act(conn: socket.socket, req: Request, stop: threading.Event) -> bool:
        if stop.wait(seconds):
            return False
        return then(conn, req, stop)

    return act


def drip(body: bytes, interval_s: float) -> Action:
    """A 200 whose headers arrive at once and whose body arrives a byte per `interval_s`."""

    def act(conn: socket.socket, req: Request, stop: threading.Event) -> bool:
        conn.sendall(_head(200, {"Content-Length": str(len(body))}))
        for i in range(len(body)):
            if stop.wait(interval_s):
                return False
            conn.sendall(body[i : i + 1])
        return True

    return act


def drip_headers(interval_s: float) -> Action:
    """A status line and headers that never end, a byte per `interval_s`."""

    def act(conn: socket.socket, req: Request, stop: threading.Event) -> bool:
        for b in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100_000:
            if stop.wait(interval_s):
                return False
            conn.sendall(bytes([b]))
        return False

    return act


def huge(total: int, declare: bool = True) -> Action:
    """A 200 of `total` bytes (64 KiB blocks, sent until the client stops reading);
    `declare`: with its Content-Length, else delimited by closing the connection."""

    def act(conn: socket.socket, req: Request, stop: threading.Event) -> bool:
        h = {"Content-Type": "application/json"}
        if declare:
            h["Content-Length"] = str(total)
        else:
            h["Connection"] = "close"
        conn.sendall(_head(200, h))
        block = b'{"pad":"' + b"x" * 65_000 + b'"}'
        sent = 0
        while sent < total and not stop.is_set():
            piece = block[: total - sent]
            conn.sendall(piece)
            sent += len(piece)
        return False

    return act


def sse(events: list[Any], gap_s: float = 0.0) -> Action:
    """A 200 `text/event-stream` in chunks: each event (a dict sent as `data: {json}`, or
    raw bytes) in its own chunk, `gap_s` apart, then `data: [DONE]`."""

    def act(conn: socket.socket, req: Request, stop: threading.Event) -> bool:
        conn.sendall(
            _head(200, {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"})
        )
        for i, ev in enumerate([*events, b"data: [DONE]\n\n"]):
            if i and gap_s and stop.wait(gap_s):
                return False
            data = ev if isinstance(ev, bytes) else b"data: " + json_body(ev) + b"\n\n"
            conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))
        conn.sendall(b"0\r\n\r\n")
        return True

    return act


def echo_auth(status: int = 401) -> Action:
    """An error that repeats the request's Authorization header (and the key alone)."""

    def act(conn: socket.socket, req: Request, stop: threading.Event) -> bool:
        auth = req.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ")
        msg = {"error": {"message": f"invalid api key: {auth} (key {key})", "code": status}}
        return reply(msg, status)(conn, req, stop)

    return act


def stream_chunks(text: list[str], usage: dict[str, Any], timings: dict[str, Any]) -> list[Any]:
    """OpenAI chat chunks of `text` (one per piece), then a last chunk with usage and timings."""
    chunks: list[Any] = [
        {"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]} for t in text
    ]
    chunks.append(
        {
            "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
            "usage": usage,
            "timings": timings,
        }
    )
    return chunks


class FaultyServer:
    """Scripted HTTP/1.1 over a plain socket; `script(i, request)` gives request i's action."""

    def __init__(self, script: Callable[[int, Request], Action]) -> None:
        self.script = script
        self.seen: list[Request] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def __enter__(self) -> FaultyServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn, addr[1]), daemon=True).start()

    def _handle(self, conn: socket.socket, port: int) -> None:
        f = conn.makefile("rb")
        try:
            while not self._stop.is_set():
                line = f.readline()
                if not line:
                    return
                method, path, *_ = line.decode("latin-1").split(" ") + ["", ""]
                req = Request(port, method, path, at=time.monotonic())
                while (h := f.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode().partition(":")
                    req.headers[name.strip().lower()] = value.strip()
                req.body = f.read(int(req.headers.get("content-length", "0")))
                with self._lock:
                    self.seen.append(req)
                    i = len(self.seen) - 1
                if not self.script(i, req)(conn, req, self._stop):
                    return
        except OSError:
            pass
        finally:
            f.close()
            conn.close()

    @property
    def posts(self) -> list[Request]:
        with self._lock:
            return [r for r in self.seen if r.method == "POST"]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def chat(action: Callable[[int], Action]) -> Callable[[int, Request], Action]:
    """A script for a whole run: GETs (health, metrics) answer ok; POST n gets `action(n)`."""
    count = [0]
    lock = threading.Lock()

    def script(i: int, req: Request) -> Action:
        if req.method != "POST":
            return reply({"status": "ok"})
        with lock:
            n = count[0]
            count[0] += 1
        return action(n)

    return script


def full_backlog() -> tuple[socket.socket, list[socket.socket]]:
    """A listening socket that never accepts, its backlog filled: a new connect hangs
    (Linux drops the SYN), like a server too busy to take a connection."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    fillers = []
    for _ in range(8):
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(srv.getsockname())
        fillers.append(c)
    time.sleep(0.2)
    return srv, fillers
