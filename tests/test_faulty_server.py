"""Faulty servers against the real backend and the real command (issue 15, the server half).

A misbehaving HTTP server on loopback (tests/faulty.py: a real TCP socket, nothing mocked)
drips, floods, resets, lies in its counters, rate-limits, echoes the API key or never
answers. Each case drives the real OpenAI-compatible backend (the client every HTTP backend
builds on) and asserts the step's outcome, its error text and its time bound; the cases a
user meets in a run (a key echoed, a hang stopped by Ctrl+C / SIGTERM / q, a drip, a flood)
also drive the real `halospec-tui` command in a child process and assert what is on disk,
what was printed, and what is absent.
"""

from __future__ import annotations

import email.utils
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from halospec_tui.backends.base import Prompt, Reply
from halospec_tui.backends.openai_compat import OpenAICompatBackend
from halospec_tui.profile import Profile
from tests.conftest import ROOT
from tests.faulty import (
    Action,
    FaultyServer,
    chat,
    drip,
    echo_auth,
    hang,
    huge,
    json_body,
    reply,
    reset,
    sse,
    stream_chunks,
)
from tests.faulty_cli import (
    CLI,
    KEY,
    KEY_ENV,
    cli_env,
    cli_profile,
    hanging_after,
    stop_while_hanging,
)
from tests.faulty_cli import rows as csv_rows
from tests.helpers import ok_reply

PROMPT = Prompt("p", "prose", "hi")


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[int], Action]], FaultyServer]]:
    made: list[FaultyServer] = []

    def make(action: Callable[[int], Action]) -> FaultyServer:
        made.append(FaultyServer(chat(action)))
        return made[-1]

    yield make
    for s in made:
        s.close()


def backend(url: str, **request: Any) -> OpenAICompatBackend:
    p = Profile(name="faulty")
    p.request.attempts = 1
    p.request.backoff_ms = 50.0
    p.request.max_tokens = 16
    for k, v in request.items():
        setattr(p.request, k, v)
    return OpenAICompatBackend(p, url=url)


def complete(b: OpenAICompatBackend) -> tuple[Reply, float]:
    t0 = time.monotonic()
    try:
        return b.complete(PROMPT, 3), time.monotonic() - t0
    finally:
        b.close()


# --- the backend, case by case --------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_drip_fails_the_step_at_the_deadline(serve, stream: bool) -> None:  # type: ignore[no-untyped-def]
    """A reply dripped a byte per 0.1 s (a streamed one: an event per 0.3 s) and timeout_s 1:
    the step fails at 1 s, not after the whole reply (which would take 20+ s)."""
    act = (
        sse(stream_chunks(["tok"] * 60, {"completion_tokens": 60}, {}), gap_s=0.3)
        if stream
        else drip(json_body(ok_reply()), 0.1)
    )
    srv = serve(lambda n: act)
    r, took = complete(backend(srv.url, timeout_s=1.0, stream=stream))
    assert not r.success and r.error == "timeout after 1 s"
    assert 0.9 < took < 1.8, took


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "until-close"])
def test_a_huge_reply_fails_the_step_unread(serve, declare: bool) -> None:  # type: ignore[no-untyped-def]
    srv = serve(lambda n: huge(500 << 20, declare=declare))
    r, took = complete(backend(srv.url, max_reply_bytes=1 << 20))
    assert not r.success and r.error == "reply larger than 1 MiB (request.max_reply_bytes)"
    assert took < 2.0, took


def test_a_huge_streamed_reply_fails_the_step(serve) -> None:  # type: ignore[no-untyped-def]
    chunks = stream_chunks(["x" * 4000] * 400, {"completion_tokens": 400}, {})
    srv = serve(lambda n: sse(chunks))
    r, _ = complete(backend(srv.url, max_reply_bytes=64 << 10, stream=True))
    assert not r.success and r.error.startswith("reply larger than 64 KiB")


def test_a_connection_reset_fails_the_step_and_the_next_one_works(serve) -> None:  # type: ignore[no-untyped-def]
    srv = serve(lambda n: reset() if n == 0 else reply(ok_reply(tokens=9)))
    b = backend(srv.url)
    try:
        first = b.complete(PROMPT, 3)
        second = b.complete(PROMPT, 3)
    finally:
        b.close()
    assert not first.success and "Reset" in first.error, first.error
    assert second.success and second.tokens == 9


def _with(tokens: Any = 16, **timings: Any) -> bytes:
    body = ok_reply(tokens=16, draft_n=12, accepted=10)
    body["usage"]["completion_tokens"] = tokens
    body["timings"].update(timings)
    return json_body(body)


BAD_COUNTERS = {
    "negative tokens": (_with(-5), "implausible counter: usage.completion_tokens = -5"),
    "tokens far above max_tokens": (
        _with(10**9),
        "implausible counter: usage.completion_tokens = 1000000000 (max_tokens is 16)",
    ),
    "more accepted than drafted": (
        _with(draft_n=4, draft_n_accepted=9),
        "implausible counters: timings.draft_n_accepted = 9 > draft_n = 4",
    ),
    "negative time": (_with(prompt_ms=-3.0), "implausible timing: timings.prompt_ms = -3.0"),
    "negative draft count": (_with(draft_n=-1), "implausible counter: timings.draft_n = -1"),
    "NaN time": (
        _with(predicted_ms=1.0).replace(b'"predicted_ms": 1.0', b'"predicted_ms": NaN'),
        "implausible counter: timings.predicted_ms = nan",
    ),
    "infinite tokens": (
        _with(1).replace(b'"completion_tokens": 1', b'"completion_tokens": Infinity'),
        "implausible counter: usage.completion_tokens = inf",
    ),
}


@pytest.mark.parametrize("case", BAD_COUNTERS)
def test_impossible_counters_fail_the_step(serve, case: str) -> None:  # type: ignore[no-untyped-def]
    body, error = BAD_COUNTERS[case]
    srv = serve(lambda n: reply(body))
    r, _ = complete(backend(srv.url))
    assert not r.success and r.latency_ms == 0.0
    assert r.error.startswith(error), r.error


def test_impossible_counters_in_a_stream_fail_the_step(serve) -> None:  # type: ignore[no-untyped-def]
    srv = serve(lambda n: sse(stream_chunks(["a", "b"], {"completion_tokens": -5}, {})))
    r, _ = complete(backend(srv.url, stream=True))
    assert not r.success and r.error.startswith("implausible counter: usage.completion_tokens")


@pytest.mark.parametrize("form", ["seconds", "http-date"])
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(serve, form: str, status: int) -> None:  # type: ignore[no-untyped-def]
    """The retry waits what the server asked (1 s here, not the 50 ms backoff)."""
    when = "1" if form == "seconds" else email.utils.formatdate(time.time() + 2, usegmt=True)
    srv = serve(
        lambda n: (
            reply({"error": "busy"}, status, {"Retry-After": when})
            if n == 0
            else reply(ok_reply(tokens=4))
        )
    )
    r, _ = complete(backend(srv.url, attempts=2, timeout_s=5.0))
    posts = srv.posts
    assert r.success and r.attempts == 2, r.error
    waited = posts[1].at - posts[0].at
    # an HTTP date has one-second resolution: 2 s ahead means 1 to 2 s of waiting
    assert 0.95 <= waited < 2.5, waited


def test_retry_after_past_the_steps_time_fails_at_once(serve) -> None:  # type: ignore[no-untyped-def]
    srv = serve(lambda n: reply({"error": "busy"}, 429, {"Retry-After": "3600"}))
    r, took = complete(backend(srv.url, attempts=3, timeout_s=2.0))
    assert not r.success and took < 1.0 and len(srv.posts) == 1
    assert (
        r.error.startswith("HTTP 429") and "Retry-After 3600 s is past the step's time" in r.error
    )


def test_an_echoed_key_is_masked(serve, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(KEY_ENV, KEY)
    srv = serve(lambda n: echo_auth())
    b = backend(srv.url)
    b.profile.backend.api_key_env = KEY_ENV
    r, _ = complete(b)
    assert srv.posts[0].headers["authorization"] == f"Bearer {KEY}"  # the key was sent
    assert not r.success and r.error.startswith("HTTP 401") and "***" in r.error
    assert "SECRET" not in r.error, r.error


def test_an_unset_key_variable_is_said_at_start(serve, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(KEY_ENV, raising=False)
    srv = serve(lambda n: reply(ok_reply()))
    b = backend(srv.url)
    b.profile.backend.api_key_env = KEY_ENV
    said: list[tuple[str, str]] = []
    b.set_notifier(lambda level, text: said.append((level, text)))
    try:
        b.start()
    finally:
        b.close()
    assert said == [
        (
            "warning",
            f"backend.api_key_env names {KEY_ENV}, which is not set: requests go without a key",
        )
    ]


def test_abort_ends_a_request_that_never_gets_an_answer(serve) -> None:  # type: ignore[no-untyped-def]
    """A server that reads the request and never answers, a 60 s timeout, 3 attempts: the
    run's stop (abort from another thread) ends the step within a fraction of a second, as
    interrupted (never retried, never a failure of the server)."""
    srv = serve(lambda n: hang())
    b = backend(srv.url, timeout_s=60.0, attempts=3)
    threading.Timer(0.5, b.abort).start()
    r, took = complete(b)
    assert r.interrupted and not r.success and r.error == "interrupted"
    assert 0.4 < took < 1.5 and len(srv.posts) == 1


def test_a_streamed_reply_is_timed_and_folded(serve) -> None:  # type: ignore[no-untyped-def]
    """Five tokens, 0.1 s apart, then usage and llama-server timings on the last chunk."""
    timings = {"prompt_n": 4, "prompt_ms": 2.0, "predicted_n": 5, "predicted_ms": 400.0}
    timings.update(draft_n=4, draft_n_accepted=3)
    chunks = stream_chunks(["a", "b", "c", "d", "e"], {"completion_tokens": 5}, timings)
    srv = serve(lambda n: sse(chunks, gap_s=0.1))
    r, _ = complete(backend(srv.url, stream=True))
    assert r.success and r.text == "abcde" and r.tokens == 5, r.error
    assert (r.draft_n, r.draft_n_accepted, r.predicted_n) == (4, 3, 5)
    body = srv.posts[0].json()
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert r.ttft_ms is not None and r.ttft_ms < 80, r.ttft_ms  # the first chunk: at once
    assert r.itl_p50_ms is not None and 80 < r.itl_p50_ms < 200, r.itl_p50_ms
    assert r.latency_ms > 500  # the whole stream: five gaps of 0.1 s


def test_a_stream_without_usage_fails_the_step_and_says_why(serve) -> None:  # type: ignore[no-untyped-def]
    srv = serve(lambda n: sse([{"choices": [{"index": 0, "delta": {"content": "a"}}]}]))
    r, _ = complete(backend(srv.url, stream=True))
    assert not r.success and r.error == "reply has no usage.completion_tokens"


def test_a_stream_with_an_error_event_fails_the_step(serve) -> None:  # type: ignore[no-untyped-def]
    srv = serve(lambda n: sse([{"error": {"message": f"bad key {KEY}"}}]))
    r, _ = complete(backend(srv.url, stream=True))
    assert not r.success and r.error.startswith("server error:") and "SECRET" not in r.error


# --- the real command -----------------------------------------------------------------------


def _no_key_anywhere(out: Path, *texts: str) -> None:
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"SECRET" not in data, f"the key is in {path.name}"
    for text in texts:
        assert "SECRET" not in text


def test_cli_writes_and_prints_no_echoed_key(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A server that echoes the key in every error: the key is in no file of the run folder
    (results.csv, responses.jsonl with the full replies, summary.json, profile.toml) and not
    on stdout or stderr; the error column says what happened with the key masked."""
    srv = serve(lambda n: echo_auth())
    out = tmp_path / "run"
    r = subprocess.run(
        [*CLI, "--headless", "--profile", str(cli_profile(tmp_path, srv.url)), "--out", str(out)],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert srv.posts and all(p.headers["authorization"] == f"Bearer {KEY}" for p in srv.posts)
    got = csv_rows(out)
    assert len(got) == 3 and all(row["success"] == "0" for row in got)
    assert got[0]["error"].startswith("HTTP 401") and "***" in got[0]["error"]
    assert "***" in r.stdout  # the failure lines were printed, masked
    _no_key_anywhere(out, r.stdout, r.stderr)


def test_cli_drip_and_flood_fail_their_steps_within_bounds(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Step 1 drips (a byte per 0.2 s, timeout 1 s), step 2 floods (500 MB, cap 1 MiB),
    step 3 lies (completion_tokens -5), step 4 answers: the run ends in a few seconds, each
    bad step failed with its reason, responses.jsonl stays small, the liar never wins."""
    acts = [drip(json_body(ok_reply()), 0.2), huge(500 << 20), reply(_with(-5))]
    srv = serve(lambda n: acts[n] if n < len(acts) else reply(ok_reply(tokens=16)))
    out = tmp_path / "run"
    prof = cli_profile(tmp_path, srv.url, steps=4, timeout_s=1.0, max_reply_bytes=1 << 20)
    t0 = time.monotonic()
    r = subprocess.run(
        [*CLI, "--headless", "--profile", str(prof), "--out", str(out)],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    got = csv_rows(out)
    assert [row["success"] for row in got] == ["0", "0", "0", "1"]
    assert got[0]["error"] == "timeout after 1 s"
    assert got[1]["error"].startswith("reply larger than 1 MiB")
    assert got[2]["error"].startswith("implausible counter: usage.completion_tokens = -5")
    assert took < 15, took
    assert (out / "responses.jsonl").stat().st_size < 64 << 10
    summary = json.loads((out / "summary.json").read_text())
    assert summary["modes"][0]["failures"] == 3 and summary["modes"][0]["tokens_per_s"] > 0


def _assert_interrupted_run(out: Path, n_ok: int) -> None:
    got = csv_rows(out)
    assert len(got) == n_ok + 1, got
    assert all(row["success"] == "1" for row in got[:n_ok])
    assert got[-1]["success"] == "0" and got[-1]["error"] == "interrupted"
    summary = json.loads((out / "summary.json").read_text())
    mode = summary["modes"][0]
    assert summary["cancelled"] is True
    assert (mode["steps"], mode["successes"], mode["failures"], mode["interrupted"]) == (
        n_ok,
        n_ok,
        0,
        1,
    )


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_cli_stop_while_a_request_hangs_exits_within_2_s(serve, tmp_path: Path, how: str) -> None:  # type: ignore[no-untyped-def]
    """Three steps answered (streamed), then a server that never answers with timeout_s 60:
    Ctrl+C / SIGTERM ends the run within 2 s, the three rows kept and the abandoned step
    recorded as interrupted (it used to wait out the request: 19-29 s seen)."""
    srv = serve(hanging_after(3, stream=True))
    r = stop_while_hanging(srv, tmp_path, n_ok=3, how=how, monitor=False, stream=True)
    assert r.returncode == 130, r.stderr
    assert r.took < 2.0, r.took
    assert "Traceback" not in r.stderr and "INTERRUPTED" in r.stdout and "ttft" in r.stdout
    _assert_interrupted_run(tmp_path / "run", 3)


@pytest.mark.parametrize("how", ["q", "SIGINT", "SIGTERM"])
def test_monitor_stop_while_a_request_hangs_exits_within_2_s(
    serve, tmp_path: Path, how: str
) -> None:  # type: ignore[no-untyped-def]
    """The same with the monitor, in a child on a real pseudo-terminal: `q`, Ctrl+C (SIGINT)
    or SIGTERM while the server hangs; the monitor exits within 2 s, rows on disk."""
    srv = serve(hanging_after(2, stream=False))
    r = stop_while_hanging(srv, tmp_path, n_ok=2, how=how, monitor=True, stream=False)
    assert r.returncode == {"q": 0, "SIGINT": 130, "SIGTERM": 143}[how]
    assert r.took < 2.0, r.took
    _assert_interrupted_run(tmp_path / "run", 2)
