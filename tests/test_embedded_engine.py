"""The embedded engine: physics counters, determinism, protocol, process lifecycle.

Real HTTP on loopback against real server processes; the physics is made cheap here
(`FAST`) so the whole file runs in a few seconds on 2 cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import httpx
import psutil
import pytest

from halospec_tui.backends.base import BackendUnavailable
from halospec_tui.backends.embedded.engine import Engine, classify
from halospec_tui.backends.embedded.launcher import EmbeddedServer
from halospec_tui.backends.embedded.server import parse_llamacpp_args
from halospec_tui.profile import EmbeddedSettings

PROMPT = (
    "Explain speculative decoding in exactly ONE sentence. "
    "Start immediately with the definition (no preface)."
)
FAST = {"draft_work": 1, "verify_wait_ms": 0.1, "verify_work": 0, "threads": 1}
DRAFT_COUNTERS = (
    "llamacpp:spec_decode_num_draft_tokens_total",
    "llamacpp:spec_decode_num_accepted_tokens_total",
    "llamacpp:spec_decode_num_drafts_total",
    "llamacpp:tokens_predicted_total",
    "llamacpp:n_decode_total",
)


def chat(
    client: httpx.Client,
    url: str,
    *,
    n_max: int | None = None,
    prompt: str = PROMPT,
    max_tokens: int = 64,
    path: str = "/v1/chat/completions",
    **extra: object,
) -> dict:
    body: dict = {
        "model": "Qwen3-0.6B-GGUF",
        "messages": [{"role": "user", "content": prompt}],
        "stream": False,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": ["</think>"],
        **extra,
    }
    if n_max is not None:
        body["speculative.n_max"] = n_max
    r = client.post(url + path, json=body)
    assert r.status_code == 200, r.text
    return r.json()


def observed_k(t: dict) -> float:
    return t["draft_n"] / (t["predicted_n"] - t["draft_n_accepted"])


def metrics(client: httpx.Client, url: str) -> dict[str, float]:
    r = client.get(url + "/metrics")
    assert r.status_code == 200
    out: dict[str, float] = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids: list[int], timeout: float = 3.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(gone(p) for p in pids):
            return []
        time.sleep(0.05)
    return [p for p in pids if not gone(p)]


@pytest.fixture(scope="module")
def server():
    with EmbeddedServer(seed=42, **FAST, default_n_max=3) as srv:
        yield srv


@pytest.fixture()
def client():
    with httpx.Client(timeout=10.0) as c:
        yield c


# --- classification and the in-process engine -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "category"),
    [
        (PROMPT, "prose"),
        ("Summarise the history of the printing press in three sentences.", "prose"),
        ("Explain how decoding works in a transformer.", "prose"),  # not 'code'
        ("Write a Python function that reverses a linked list.", "code"),
        ("Fix this:\n```\nfor i in range(3) print(i)\n```", "code"),
        ("Implement binary search in Rust.", "code"),
        ("Solve for x: 3x + 5 = 20.", "math"),
        ("Compute 12 * 7 + 3.", "math"),
        ("What is 17+25?", "math"),
        ("How many primes are there below 100?", "math"),
        ("Return a JSON object with fields name and age.", "json"),
        ('Complete this: {"user": "ada", "roles": [', "json"),
        ("Write a Python function that returns JSON.", "json"),  # json wins over code
    ],
)
def test_classify(text: str, category: str) -> None:
    assert classify(text) == category


def test_engine_in_process_follows_n_max_and_is_reproducible() -> None:
    with Engine(seed=7, **FAST) as a, Engine(seed=7, **FAST) as b:
        seq = [
            (PROMPT, 96, 1),
            (PROMPT, 96, 4),
            ("Return JSON for a cat.", 96, 6),
            (PROMPT, 96, None),
        ]
        ra = [a.generate(p, m, k) for p, m, k in seq]
        rb = [b.generate(p, m, k) for p, m, k in seq]
    for x, y in zip(ra, rb, strict=True):
        assert (x.text, x.draft_n, x.draft_n_accepted, x.n_drafts, x.accepted_per_pos) == (
            y.text,
            y.draft_n,
            y.draft_n_accepted,
            y.n_drafts,
            y.accepted_per_pos,
        )
    assert [r.predicted_n for r in ra] == [96] * 4
    assert 0.9 <= ra[0].observed_k <= 1.0
    assert 3.4 <= ra[1].observed_k <= 4.0
    assert ra[2].category == "json" and 5.0 <= ra[2].observed_k <= 6.0
    assert ra[3].n_max == 3 and 2.6 <= ra[3].observed_k <= 3.0
    # n_max 0: no speculation, no draft fields
    with Engine(seed=7, **FAST) as e:
        r = e.generate(PROMPT, 32, 0)
    assert r.draft_n == 0 and "draft_n" not in r.timings() and r.n_steps == 31


def test_streams_share_an_engine_with_common_random_numbers() -> None:
    """Modes that share one engine (an evaluation) each name a stream: the i-th request of
    every stream meets the same draws, whatever the other streams asked in between."""

    def sig(r):  # type: ignore[no-untyped-def]
        return (r.text, r.draft_n, r.draft_n_accepted, r.accepted_per_pos)

    with Engine(seed=5, **FAST) as shared, Engine(seed=5, **FAST) as alone:
        mixed = []
        for _ in range(3):
            mixed.append(("a", shared.generate(PROMPT, 64, 4, stream="a")))
            shared.generate(PROMPT, 64, 7, stream="noise")  # another mode, another k
            mixed.append(("b", shared.generate(PROMPT, 64, 4, stream="b")))
        solo = [alone.generate(PROMPT, 64, 4, stream="a") for _ in range(3)]
        k1 = [alone.generate(PROMPT, 64, 1, stream="c") for _ in range(3)]
    a = [sig(r) for s, r in mixed if s == "a"]
    b = [sig(r) for s, r in mixed if s == "b"]
    assert a == b == [sig(r) for r in solo]
    assert len({x[2] for x in a}) > 1  # requests differ from each other
    # like greedy decoding, the text does not depend on k
    assert [r.text for r in solo] == [r.text for r in k1]


def test_engine_acceptance_tracks_alpha() -> None:
    with Engine(seed=3, **FAST, alphas={"prose": 0.5, "json": 0.95}) as e:
        prose = [e.generate(PROMPT, 200, 1) for _ in range(5)]
        js = [e.generate("Give me JSON.", 200, 1) for _ in range(5)]
    rate = sum(r.draft_n_accepted for r in prose) / sum(r.draft_n for r in prose)
    assert 0.4 < rate < 0.6
    rate = sum(r.draft_n_accepted for r in js) / sum(r.draft_n for r in js)
    assert rate > 0.88


def test_draft_threads_change_costs_not_replies() -> None:
    """The draft pool's size is a cost, never a result: with a worker process (threads 2)
    the engine gives the replies and counters it gives alone, and closing it ends the
    worker (a real child process, started from draft_pool.py)."""

    def sig(r):  # type: ignore[no-untyped-def]
        return (r.text, r.draft_n, r.draft_n_accepted, r.n_steps, r.accepted_per_pos)

    seq = [(PROMPT, 64, 3), ("Return JSON for a cat.", 64, 6), (PROMPT, 48, 1), (PROMPT, 64, 3)]
    with Engine(seed=9, **FAST) as alone:
        solo = [sig(alone.generate(p, m, k)) for p, m, k in seq]
    pooled = Engine(seed=9, **{**FAST, "threads": 2})
    try:
        workers = pooled.pids()
        assert len(workers) == 1 and psutil.pid_exists(workers[0])
        assert [sig(pooled.generate(p, m, k)) for p, m, k in seq] == solo
    finally:
        pooled.close()
    assert wait_gone(workers) == []


def test_package_names_resolve_and_classify_needs_no_numpy() -> None:
    """Code imports `Engine`, `GenerationResult`, `classify`, `CATEGORIES` and
    `DEFAULT_ALPHAS` from the package and the engine's helpers from engine.py; the package
    loads numpy only with `Engine` (the server pins BLAS threads before that)."""
    code = textwrap.dedent(
        """
        import sys
        import halospec_tui.backends.embedded as pkg
        from halospec_tui.backends.embedded import CATEGORIES, classify
        light = "numpy" not in sys.modules
        from halospec_tui.backends.embedded import DEFAULT_ALPHAS, Engine, GenerationResult
        from halospec_tui.backends.embedded.engine import (
            Counters, DraftPool, EngineError, count_tokens, prometheus_text,
        )
        print(light, "numpy" in sys.modules, classify("Give me JSON."), pkg.classify is classify,
              sorted(DEFAULT_ALPHAS) == sorted(CATEGORIES), Engine.__name__)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "json", "True", "True", "Engine"]


# --- the HTTP server --------------------------------------------------------------------------


def test_health_models_and_chat_reply_shape(server: EmbeddedServer, client: httpx.Client) -> None:
    url = server.url
    assert client.get(url + "/health").json() == {"status": "ok"}
    assert client.get(url + "/api/v1/health").json()["status"] == "ok"
    for path in ("/v1/models", "/api/v1/models"):
        assert client.get(url + path).json()["data"][0]["id"]
    reply = chat(client, url, n_max=4)
    assert reply["choices"][0]["message"]["content"]
    usage, t = reply["usage"], reply["timings"]
    assert usage["completion_tokens"] == t["predicted_n"] == 64
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    for key in (
        "prompt_n",
        "prompt_ms",
        "predicted_n",
        "predicted_ms",
        "predicted_per_second",
        "draft_n",
        "draft_n_accepted",
    ):
        assert key in t
    assert 0 <= t["draft_n_accepted"] <= t["draft_n"]
    # Lemonade's paths answer the same way
    for path in ("/api/v1/chat/completions", "/chat/completions"):
        assert chat(client, url, n_max=2, path=path)["timings"]["predicted_n"] == 64
    # n_max 0: speculation off, so no draft fields (as llama-server)
    assert "draft_n" not in chat(client, url, n_max=0)["timings"]
    # native /completion
    r = client.post(
        url + "/completion", json={"prompt": PROMPT, "n_predict": 16, "speculative.n_max": 2}
    )
    assert r.status_code == 200 and r.json()["timings"]["predicted_n"] == 16


@pytest.mark.parametrize(
    ("n_max", "lo", "hi"), [(1, 0.95, 1.0), (2, 1.85, 2.0), (4, 3.6, 4.0), (8, 7.0, 8.0)]
)
def test_observed_k_follows_requested_n_max(
    server: EmbeddedServer, client: httpx.Client, n_max: int, lo: float, hi: float
) -> None:
    t = chat(client, server.url, n_max=n_max, max_tokens=256)["timings"]
    assert lo <= observed_k(t) <= hi
    assert round(observed_k(t)) == n_max


def test_metrics_grow_by_the_replys_counters(server: EmbeddedServer, client: httpx.Client) -> None:
    before = metrics(client, server.url)
    t = chat(client, server.url, n_max=5)["timings"]
    after = metrics(client, server.url)
    diff = {k: after.get(k, 0) - before.get(k, 0) for k in DRAFT_COUNTERS}
    assert diff["llamacpp:spec_decode_num_draft_tokens_total"] == t["draft_n"]
    assert diff["llamacpp:spec_decode_num_accepted_tokens_total"] == t["draft_n_accepted"]
    assert diff["llamacpp:tokens_predicted_total"] == t["predicted_n"]
    steps = t["predicted_n"] - t["draft_n_accepted"]  # prefill + verify steps
    assert diff["llamacpp:n_decode_total"] == steps
    assert diff["llamacpp:spec_decode_num_drafts_total"] in (steps - 1, steps - 2)
    per_pos = sum(
        after[k] - before.get(k, 0)
        for k in after
        if k.startswith("llamacpp:spec_decode_num_accepted_tokens_per_pos_total{")
    )
    assert per_pos == t["draft_n_accepted"]


def test_bad_requests_get_400(server: EmbeddedServer, client: httpx.Client) -> None:
    url = server.url
    r = client.post(
        url + "/v1/chat/completions",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "error" in r.json()
    r = client.post(url + "/v1/chat/completions", json={"messages": "hi"})
    assert r.status_code == 400
    r = client.post(
        url + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "x"}], "speculative.n_max": "four"},
    )
    assert r.status_code == 400
    assert client.get(url + "/nope").status_code == 404
    # the connection survives the errors (keep-alive)
    assert client.get(url + "/health").status_code == 200


def test_reload_sets_default_k_and_health_reports_it(client: httpx.Client) -> None:
    with EmbeddedServer(seed=1, **FAST, ignore_request_n_max=True) as srv:
        url = srv.url
        # ignored per-request key: k stays at the default 3
        t = chat(client, url, n_max=8, max_tokens=128)["timings"]
        assert 2.7 <= observed_k(t) <= 3.0
        r = client.post(
            url + "/api/v1/load",
            json={
                "model_name": "Qwen3-0.6B-GGUF",
                "llamacpp_args": "--spec-type draft-simple --spec-draft-n-max 6 --ctx-shift",
            },
        )
        assert r.status_code == 200, r.text
        health = client.get(url + "/api/v1/health").json()
        (entry,) = health["all_models_loaded"]
        assert entry["model_name"] == "Qwen3-0.6B-GGUF"
        assert entry["recipe_options"]["llamacpp_args"].endswith("--spec-draft-n-max 6 --ctx-shift")
        assert "--spec-draft-n-max 6" in entry["launch_command"]
        assert entry["pid"] == srv.pid
        t = chat(client, url, n_max=1, max_tokens=128)["timings"]
        assert 5.2 <= observed_k(t) <= 6.0
        # reserved flags are refused, as Lemonade does, and change nothing
        r = client.post(
            url + "/api/v1/load", json={"model_name": "x", "llamacpp_args": "-md d.gguf"}
        )
        assert r.status_code == 400
        assert (
            "--spec-draft-n-max 6"
            in client.get(url + "/api/v1/health").json()["all_models_loaded"][0]["launch_command"]
        )


def test_parse_llamacpp_args() -> None:
    assert parse_llamacpp_args("--spec-type draft-simple --spec-draft-n-max 4", 3) == (
        4,
        None,
        "draft-simple",
    )
    assert parse_llamacpp_args("--spec-draft-n-max=7 --spec-draft-n-min 2 -ngl 99", 3) == (
        7,
        2,
        "draft-simple",
    )
    assert parse_llamacpp_args("", 3)[0] == 3
    assert parse_llamacpp_args("--spec-type none", 3)[0] == 0


def test_same_seed_same_sequence_same_counters_and_text(client: httpx.Client) -> None:
    seq = [
        (3, PROMPT),
        (1, PROMPT),
        (6, "Return a JSON object for a cat."),
        (4, "Write a Python function to add two numbers."),
        (3, PROMPT),
    ]
    runs = []
    for _ in range(2):
        with EmbeddedServer(seed=99, **FAST) as srv:
            replies = [chat(client, srv.url, n_max=k, prompt=p) for k, p in seq]
            m = metrics(client, srv.url)
        runs.append(
            (
                [
                    (
                        r["choices"][0]["message"]["content"],
                        r["timings"]["draft_n"],
                        r["timings"]["draft_n_accepted"],
                    )
                    for r in replies
                ],
                {k: v for k, v in m.items() if "seconds" not in k},
            )
        )
    assert runs[0] == runs[1]


# --- process lifecycle ------------------------------------------------------------------------


def test_stop_leaves_no_process() -> None:
    srv = EmbeddedServer(seed=5, draft_work=1, verify_wait_ms=0.1, verify_work=0, threads=2)
    srv.start()
    pid = srv.pid
    assert pid is not None
    family = [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    assert len(family) == 2  # the server and its one draft worker
    srv.stop()
    assert wait_gone(family) == []
    assert not srv.running()


def test_server_exits_when_its_parent_is_killed() -> None:
    code = textwrap.dedent(
        """
        import sys, time
        from halospec_tui.backends.embedded.launcher import EmbeddedServer
        srv = EmbeddedServer(seed=1, draft_work=1, verify_wait_ms=0.1, verify_work=0, threads=2)
        srv.start()
        print(srv.pid, flush=True)
        time.sleep(60)
        """
    )
    mid = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        line = mid.stdout.readline()  # type: ignore[union-attr]
        pid = int(line)
        family = [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
        assert len(family) == 2
        os.kill(mid.pid, signal.SIGKILL)
        mid.wait(5)
        assert wait_gone(family, 3.0) == []
    finally:
        if mid.poll() is None:
            mid.kill()
            mid.wait()


def test_sigterm_exits_cleanly_without_traceback() -> None:
    p = subprocess.Popen(
        [sys.executable, "-m", "halospec_tui.backends.embedded", "--port", "0", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = p.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("LISTENING http://127.0.0.1:")
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=5)
        assert p.returncode == 0
        assert "Traceback" not in err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_start_failure_raises_backend_unavailable_with_stderr() -> None:
    srv = EmbeddedServer(extra_args=["--alpha-code", "2"])
    with pytest.raises(BackendUnavailable) as err:
        srv.start(timeout=10)
    assert "alphas must be from 0 to 1" in str(err.value)
    assert not srv.running()


def test_from_settings_maps_sentinels() -> None:
    s = EmbeddedSettings(default_n_max=5, alpha_json=0.95)
    srv = EmbeddedServer.from_settings(s, seed=3, port=0)
    args = srv.args()
    assert args[args.index("--default-n-max") + 1] == "5"
    assert args[args.index("--alpha-json") + 1] == "0.95"
    assert "--draft-work" not in args and "--threads" not in args and "--verify-work" not in args
    assert EmbeddedServer.from_settings(s, seed=3, threads=1).args()[-2:] == ["--threads", "1"]
