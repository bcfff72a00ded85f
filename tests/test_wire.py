"""The timed POST path (backends/wire.py) against a raw socket server on loopback.

The server is a real TCP server whose behaviour per request is scripted (tests/faulty.py), so
the cases a keep-alive client must survive (the server closing an idle connection, dropping
a request, answering too late, dripping, sending too much, never answering) happen for real
rather than being mocked. Both paths are driven: the stdlib `Poster` and the httpx one
(`post_httpx`, used for HTTPS and proxies; here on loopback http).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from halospec_tui.backends.wire import (
    Guard,
    HttpxSockets,
    Poster,
    WireError,
    direct_http,
    post_httpx,
    retry_after_s,
)
from halospec_tui.profile import Profile
from tests.faulty import (
    FaultyServer,
    Request,
    drip,
    drip_headers,
    drop,
    full_backlog,
    hang,
    huge,
    reply,
    sleep,
)
from tests.helpers import ok_reply

OK = b'{"ok":true}'


@pytest.fixture
def serve() -> Iterator[Callable[..., FaultyServer]]:
    made: list[FaultyServer] = []

    def make(script: Callable[[int, Request], Any]) -> FaultyServer:
        made.append(FaultyServer(script))
        return made[-1]

    yield make
    for s in made:
        s.close()


def poster(timeout_s: float = 5.0, max_bytes: int = 4 << 20) -> Poster:
    return Poster({"Authorization": "Bearer t"}, timeout_s, 2.0, max_bytes)


class HttpxPoster:
    """The httpx path with Poster's interface, so every case runs on both paths."""

    def __init__(self, timeout_s: float = 5.0, max_bytes: int = 4 << 20) -> None:
        self.guard = Guard()
        self.sockets = HttpxSockets(self.guard)
        self.client = httpx.Client(timeout=timeout_s)
        self.timeout_s, self.max_bytes = timeout_s, max_bytes

    def post(self, url: str, payload: bytes) -> Any:
        return post_httpx(
            self.client,
            url,
            payload,
            {"Content-Type": "application/json"},
            timeout_s=self.timeout_s,
            max_bytes=self.max_bytes,
            sockets=self.sockets,
        )

    def abort(self) -> None:
        self.guard.abort()

    def close(self) -> None:
        self.client.close()
        self.guard.close()


PATHS = {"stdlib": poster, "httpx": HttpxPoster}


def test_posts_reuse_one_connection(serve) -> None:  # type: ignore[no-untyped-def]
    srv = serve(lambda i, r: reply(OK))
    p = poster()
    try:
        replies = [p.post(srv.url + "/v1/chat/completions", b'{"n":%d}' % i) for i in range(3)]
    finally:
        p.close()
    assert [r.status for r in replies] == [200, 200, 200]
    assert all(r.body == OK and r.latency_ms > 0 for r in replies)
    assert [r.body for r in srv.seen] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert len({r.port for r in srv.seen}) == 1, "keep-alive connection not reused"


def test_server_closing_an_idle_connection_costs_no_step(serve) -> None:  # type: ignore[no-untyped-def]
    srv = serve(lambda i, r: reply(OK, close=True))
    p = poster()
    try:
        first = p.post(srv.url + "/x", b"1")
        second = p.post(srv.url + "/x", b"2")
    finally:
        p.close()
    assert first.status == second.status == 200
    # each request reached the server exactly once, on its own connection
    assert [r.body for r in srv.seen] == [b"1", b"2"]
    assert len({r.port for r in srv.seen}) == 2


def test_a_dropped_request_on_a_fresh_connection_is_an_error_not_resent(serve) -> None:  # type: ignore[no-untyped-def]
    srv = serve(lambda i, r: drop())
    p = poster()
    try:
        with pytest.raises(WireError) as e:
            p.post(srv.url + "/x", b"1")
    finally:
        p.close()
    assert "RemoteDisconnected" in str(e.value) and not e.value.timeout
    assert len(srv.seen) == 1, "a request the server may have run was sent twice"


def test_timeout_is_reported_and_the_next_request_works(serve) -> None:  # type: ignore[no-untyped-def]
    srv = serve(lambda i, r: sleep(2.0, reply(OK)) if i == 0 else reply(OK))
    p = poster(timeout_s=0.3)
    try:
        with pytest.raises(WireError) as e:
            p.post(srv.url + "/x", b"1")
        assert e.value.timeout and str(e.value) == "timeout after 0.3 s"
        assert p.post(srv.url + "/x", b"2").status == 200
    finally:
        p.close()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("fault", ["drip-body", "drip-headers"])
def test_a_dripping_server_fails_the_request_at_its_deadline(serve, path: str, fault: str) -> None:  # type: ignore[no-untyped-def]
    """A byte every 0.2 s keeps every read alive: only a total deadline ends it (1 s here;
    before the deadline existed a 64-byte drip held the request for 13 s)."""
    act = drip(b"x" * 64, 0.2) if fault == "drip-body" else drip_headers(0.2)
    srv = serve(lambda i, r: act if i == 0 else reply(OK))
    p = PATHS[path](timeout_s=1.0)
    try:
        t0 = time.monotonic()
        with pytest.raises(WireError) as e:
            p.post(srv.url + "/x", b"1")
        took = time.monotonic() - t0
        assert e.value.timeout and str(e.value) == "timeout after 1 s"
        assert 0.9 < took < 1.8, took
        assert p.post(srv.url + "/x", b"2").status == 200  # the next request is unharmed
    finally:
        p.close()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "until-close"])
def test_a_reply_over_the_cap_fails_unread(serve, path: str, declare: bool) -> None:  # type: ignore[no-untyped-def]
    """300 MB offered, 64 KiB allowed: the request fails at once without reading the rest."""
    srv = serve(lambda i, r: huge(300 << 20, declare=declare) if i == 0 else reply(OK))
    p = PATHS[path](max_bytes=64 << 10)
    try:
        t0 = time.monotonic()
        with pytest.raises(WireError) as e:
            p.post(srv.url + "/x", b"1")
        assert str(e.value) == "reply larger than 64 KiB (request.max_reply_bytes)"
        assert not e.value.timeout and time.monotonic() - t0 < 2.0
        assert p.post(srv.url + "/x", b"2").body == OK
    finally:
        p.close()


# httpx opens its sockets where no hook reaches them, so a connect that hangs on the httpx
# path (HTTPS, proxies) ends at its connect timeout, min(timeout_s, 10 s): not tested here
@pytest.mark.parametrize(
    ("path", "fault"), [("stdlib", "hang"), ("stdlib", "full-backlog"), ("httpx", "hang")]
)
def test_abort_from_another_thread_stops_the_request_at_once(serve, path: str, fault: str) -> None:  # type: ignore[no-untyped-def]
    """A server that never answers (or never accepts) and a 60 s timeout: abort() ends the
    request within a fraction of a second, and every later request is refused at once."""
    backlog = None
    if fault == "hang":
        url = serve(lambda i, r: hang()).url
    else:
        backlog = full_backlog()
        url = f"http://127.0.0.1:{backlog[0].getsockname()[1]}"
    p = PATHS[path](timeout_s=60.0)
    timer = threading.Timer(0.5, p.abort)
    try:
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(WireError) as e:
            p.post(url + "/x", b"1")
        took = time.monotonic() - t0
        assert e.value.interrupted and str(e.value) == "interrupted", str(e.value)
        assert took < 1.5, took
        t0 = time.monotonic()
        with pytest.raises(WireError) as e:
            p.post(url + "/x", b"2")
        assert e.value.interrupted and time.monotonic() - t0 < 0.1
    finally:
        timer.cancel()
        p.close()
        if backlog is not None:
            for s in [backlog[0], *backlog[1]]:
                s.close()


def test_streamed_reads_are_timed_as_they_arrive(serve) -> None:  # type: ignore[no-untyped-def]
    """Each read's arrival is recorded (ms after sending, bytes so far): a body dripped at
    0.1 s per byte shows marks 0.1 s apart."""
    srv = serve(lambda i, r: drip(b"abc", 0.1))
    p = poster()
    try:
        posted = p.post(srv.url + "/x", b"1")
    finally:
        p.close()
    assert posted.body == b"abc" and [n for _, n in posted.marks] == [1, 2, 3]
    gaps = [b[0] - a[0] for a, b in zip(posted.marks, posted.marks[1:], strict=False)]
    assert all(80 < g < 300 for g in gaps), gaps


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_s("7") == 7.0
    assert retry_after_s(" 0 ") == 0.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0  # past
    for bad in (None, "", "soon", "nan", "inf", "Wed, 99 Foo 2015"):
        assert retry_after_s(bad) is None, bad


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
    from halospec_tui.backends.openai_compat import OpenAICompatBackend
    from halospec_tui.prompts import Prompt

    srv = serve(lambda i, r: reply(ok_reply(tokens=7)))
    prof = Profile(name="wire")
    prof.request.stream = False
    backend = OpenAICompatBackend(prof, url=srv.url)
    try:
        replies = [backend.complete(Prompt("p", "prose", "hi"), 3) for _ in range(3)]
    finally:
        backend.close()
    assert all(r.success and r.tokens == 7 for r in replies), [r.error for r in replies]
    assert len({r.port for r in srv.seen}) == 1
    assert json.loads(srv.seen[0].body)["speculative.n_max"] == 3


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
            reply_ = backend.complete(Prompt("p", "prose", "hi"), 2)
        finally:
            backend.close()
    assert reply_.success and reply_.tokens == 5, reply_.error
    assert proxy.count == 1 and proxy.bodies[0]["speculative.n_max"] == 2
