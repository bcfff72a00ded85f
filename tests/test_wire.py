"""The timed POST path (backends/wire.py) against a raw socket server on loopback.

The server is a real TCP server whose behaviour per request is scripted, so that the cases a
keep-alive client must survive (the server closing an idle connection, dropping a request,
answering too late) happen for real rather than being mocked.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from halospec_tui.backends.wire import Poster, WireError, direct_http
from halospec_tui.profile import Profile
from tests.helpers import ok_reply

Action = str  # "ok", "ok-then-close" (reply, then close without saying so), "drop", "sleep"


class RawServer:
    """Scripted HTTP/1.1 over a plain socket; records (client port, body) per request."""

    def __init__(self, script: Callable[[int], Action], reply: bytes = b'{"ok":true}') -> None:
        self.script = script
        self.reply = reply
        self.seen: list[tuple[int, bytes]] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(conn, addr[1]), daemon=True).start()

    def _handle(self, conn: socket.socket, port: int) -> None:
        f = conn.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                length = 0
                while (h := f.readline()) not in (b"\r\n", b""):
                    name, _, value = h.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                body = f.read(length)
                self.seen.append((port, body))
                action = self.script(len(self.seen) - 1)
                if action == "drop":
                    return
                if action == "sleep":
                    self._stop.wait(2.0)
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(self.reply)}\r\n"
                head += "Content-Type: application/json\r\n\r\n"
                conn.sendall(head.encode() + self.reply)
                if action == "ok-then-close":
                    return
        except OSError:
            pass
        finally:
            f.close()
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    made: list[RawServer] = []

    def make(script: Callable[[int], Action], **kw: Any) -> RawServer:
        made.append(RawServer(script, **kw))
        return made[-1]

    yield make
    for s in made:
        s.close()


def poster(timeout_s: float = 5.0) -> Poster:
    return Poster({"Authorization": "Bearer t"}, timeout_s, 2.0)


def test_posts_reuse_one_connection(serve) -> None:  # type: ignore[no-untyped-def]
    srv = serve(lambda i: "ok")
    p = poster()
    try:
        replies = [p.post(srv.url + "/v1/chat/completions", b'{"n":%d}' % i) for i in range(3)]
    finally:
        p.close()
    assert [r.status for r in replies] == [200, 200, 200]
    assert all(r.body == b'{"ok":true}' and r.latency_ms > 0 for r in replies)
    assert [b for _, b in srv.seen] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert len({port for port, _ in srv.seen}) == 1, "keep-alive connection not reused"


def test_server_closing_an_idle_connection_costs_no_step(serve) -> None:  # type: ignore[no-untyped-def]
    srv = serve(lambda i: "ok-then-close")
    p = poster()
    try:
        first = p.post(srv.url + "/x", b"1")
        second = p.post(srv.url + "/x", b"2")
    finally:
        p.close()
    assert first.status == second.status == 200
    # each request reached the server exactly once, on its own connection
    assert [b for _, b in srv.seen] == [b"1", b"2"]
    assert len({port for port, _ in srv.seen}) == 2


def test_a_dropped_request_on_a_fresh_connection_is_an_error_not_resent(serve) -> None:  # type: ignore[no-untyped-def]
    srv = serve(lambda i: "drop")
    p = poster()
    try:
        with pytest.raises(WireError) as e:
            p.post(srv.url + "/x", b"1")
    finally:
        p.close()
    assert "RemoteDisconnected" in str(e.value) and not e.value.timeout
    assert len(srv.seen) == 1, "a request the server may have run was sent twice"


def test_timeout_is_reported_and_the_next_request_works(serve) -> None:  # type: ignore[no-untyped-def]
    srv = serve(lambda i: "sleep" if i == 0 else "ok")
    p = poster(timeout_s=0.3)
    try:
        with pytest.raises(WireError) as e:
            p.post(srv.url + "/x", b"1")
        assert e.value.timeout and str(e.value) == "timeout after 0.3 s"
        assert p.post(srv.url + "/x", b"2").status == 200
    finally:
        p.close()


def test_refused_connection_names_the_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connecting is refused
        p = poster()
        with pytest.raises(WireError) as e:
            p.post(f"http://127.0.0.1:{port}/x", b"1")
    assert str(e.value).startswith("ConnectError:") and not e.value.timeout


def test_direct_http_only_for_plain_unproxied_http(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    assert direct_http("http://127.0.0.1:8080/v1/chat/completions")
    assert not direct_http("https://api.example.com/v1/chat/completions")
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    assert not direct_http("http://10.1.2.3:8000/v1/chat/completions")
    monkeypatch.setenv("no_proxy", "10.1.2.3")
    assert direct_http("http://10.1.2.3:8000/v1/chat/completions")


def test_backend_steps_go_through_the_kept_alive_connection(serve) -> None:  # type: ignore[no-untyped-def]
    """The backend's timed requests use the stdlib path: one connection, replies parsed."""
    import json

    from halospec_tui.backends.openai_compat import OpenAICompatBackend
    from halospec_tui.prompts import Prompt

    srv = serve(lambda i: "ok", reply=json.dumps(ok_reply(tokens=7)).encode())
    prof = Profile(name="wire")
    backend = OpenAICompatBackend(prof, url=srv.url)
    try:
        replies = [backend.complete(Prompt("p", "prose", "hi"), 3) for _ in range(3)]
    finally:
        backend.close()
    assert all(r.success and r.tokens == 7 for r in replies), [r.error for r in replies]
    assert len({port for port, _ in srv.seen}) == 1
    assert json.loads(srv.seen[0][1])["speculative.n_max"] == 3


def test_a_proxied_url_keeps_going_through_httpx_and_its_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With http_proxy set (and the host not exempt), steps reach the server via the proxy."""
    from halospec_tui.backends.openai_compat import OpenAICompatBackend
    from halospec_tui.prompts import Prompt
    from tests.helpers import ScriptedServer

    for var in ("all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with ScriptedServer(lambda i: ok_reply(tokens=5)) as proxy:
        monkeypatch.setenv("http_proxy", proxy.url)
        # a documentation address (TEST-NET-1): reachable only through the proxy
        backend = OpenAICompatBackend(Profile(name="proxied"), url="http://192.0.2.1:8080")
        try:
            reply = backend.complete(Prompt("p", "prose", "hi"), 2)
        finally:
            backend.close()
    assert reply.success and reply.tokens == 5, reply.error
    assert proxy.count == 1 and proxy.bodies[0]["speculative.n_max"] == 2
