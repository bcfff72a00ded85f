"""Against a REAL patched llama-server (built by `halospec-tui build-server`'s code path from
the same PyPI source as the stock one, cached in ~/.cache): the draft length reaches ONE server
per request, the replies' counters and the server's /metrics follow it, an adaptive mode
changes it between requests, and the stock build's not_applied stays as it was.

Kept lean for 2 shared cores: 16-token replies, no warmup, a few steps, ctx 1024, -t 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from halospec_tui import profile as P
from halospec_tui.backends import llamacpp_build
from halospec_tui.backends.llamacpp_managed import (
    LlamaServer,
    find_binary,
)
from halospec_tui.backends.metrics import parse_spec_metrics
from halospec_tui.core import verdict
from halospec_tui.core.events import Notice, StepResult
from tests.conftest import NEEDS_LLAMA_SERVER, ROOT
from tests.test_backends_llamacpp import _running, assert_gone, managed_profile, sweep

pytestmark = NEEDS_LLAMA_SERVER


def _ask(client: httpx.Client, n_max: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "Count from one to twenty in words."}],
        "max_tokens": 16,
        "temperature": 0.0,
        "seed": 1,
    }
    if n_max is not None:
        body["speculative.n_max"] = n_max
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return r.json()["timings"]  # type: ignore[no-any-return]


def _drafts(client: httpx.Client) -> dict[str, float]:
    return parse_spec_metrics(client.get("/metrics").text)


def test_patched_server_takes_the_draft_length_per_request(
    tmp_path: Path, model: str, patched_llama_server: str
) -> None:
    """One server started at a draft limit of 8: each request's speculative.n_max is what it
    drafts per step (0: not at all), by its own timings and by the server's /metrics; a
    request without the key keeps the start-up limit."""
    settings = managed_profile([]).backend
    srv = LlamaServer(
        patched_llama_server,
        model,
        settings,
        k=None,
        log_path=tmp_path / "server.log",
        draft_max=8,
    )
    try:
        srv.start(settings.startup_timeout_s)
        with httpx.Client(base_url=srv.url, timeout=120.0) as c:
            assert c.get("/props").json().get("per_request_draft") is True
            for n_max in (1, 3, None, 0):
                before = _drafts(c)
                t = _ask(c, n_max)
                after = _drafts(c)
                drafted = after["draft_tokens"] - before["draft_tokens"]
                drafts = after["drafts"] - before["drafts"]
                if n_max == 0:
                    assert not t.get("draft_n") and drafted == 0, t
                    continue
                k = 8 if n_max is None else n_max
                steps = t["predicted_n"] - t["draft_n_accepted"] - 1
                observed = t["draft_n"] / steps
                assert verdict.follows(k, observed, steps), (n_max, t)
                assert drafted == t["draft_n"]  # the reply's counter is the server's
                assert drafts and drafted / drafts <= k  # never more than asked, per draft
                if n_max == 1:
                    assert drafted / drafts == 1.0
    finally:
        srv.stop()
    assert not _running(srv.server_pid or 0)


def _adaptive_profile(binary: str) -> P.Profile:
    p = managed_profile(["fixed_1", "fixed_4", "adaptive"], binary=binary)
    p.backend.draft_channel = "request"
    # the latency controller, pushed to change k at once: 4 first, then 1
    lat = p.controller.latency
    lat.initial_k, lat.k_min, lat.step_down = 4, 1, 3
    lat.default_low_ms, lat.default_high_ms = 0.0, 1.0
    return p


def test_request_channel_on_one_patched_server_applies_k_in_every_mode(
    tmp_path: Path, model: str, patched_llama_server: str
) -> None:
    p = _adaptive_profile(llamacpp_build.PATCHED)
    assert find_binary(llamacpp_build.PATCHED) == patched_llama_server
    s, rec, pids = sweep(p, tmp_path / "run")
    assert len(pids) == 1  # ONE server for every mode and every k
    rows = [e.row for e in rec.of(StepResult)]
    assert sorted(r.mode for r in rows) == ["adaptive"] * 2 + ["fixed_1"] * 2 + ["fixed_4"] * 2
    assert all(r.success for r in rows), [r.error for r in rows]
    for r in rows:  # every reply's counters follow the k its request asked for
        assert r.observed_k is not None
        assert verdict.follows(r.draft_length, r.observed_k, verdict.row_steps(r)), (
            r.mode,
            r.draft_length,
            r.observed_k,
        )
    ad = [(r.draft_length, r.observed_k) for r in rows if r.mode == "adaptive"]
    assert [k for k, _ in ad] == [4, 1]  # the controller changed k between requests ...
    assert ad[1][1] <= 1.0 < 2.0 < ad[0][1]  # ... and the server's drafting followed
    summary = s.runner.summary
    assert summary is not None and summary["draft_channel"] == "request"
    for m in summary["modes"]:
        dc = m["draft_control"]
        assert dc["verdict"] == "applied", dc
        ev = dc["evidence"]["channel"]
        assert ev["build"] == "patched" and ev["server_draft_max"] == 8
    per_k = summary["modes"][0]["draft_control"]["evidence"]["channel"]["per_k_metrics"]
    assert set(per_k) == {"1", "4"}  # the server's /metrics, per requested k
    assert per_k["1"]["k_per_draft"] == 1.0
    assert 3.0 <= per_k["4"]["k_per_draft"] <= 4.0
    assert per_k["1"]["requests"] == 3 and per_k["4"]["requests"] == 3
    assert any("honours a per-request draft" in n.text for n in rec.of(Notice))
    assert [x.name for x in (tmp_path / "run").glob("llama-server*.log")] == ["llama-server.log"]
    assert_gone(pids)


def test_request_channel_on_the_stock_server_is_not_applied(tmp_path: Path, model: str) -> None:
    s, rec, pids = sweep(_adaptive_profile(""), tmp_path / "run")
    assert len(pids) == 1
    summary = s.runner.summary
    assert summary is not None
    assert {m["mode"]: m["draft_control"]["verdict"] for m in summary["modes"]} == {
        "fixed_1": "not_applied",
        "fixed_4": "not_applied",
        "adaptive": "not_applied",
    }
    assert summary["winner"] is None
    assert summary["modes"][0]["draft_control"]["evidence"]["channel"]["build"] == "current"
    warned = [n.text for n in rec.of(Notice) if "ignores per-request draft keys" in n.text]
    assert warned and "build-server" in warned[0]
    assert_gone(pids)


def test_build_server_prints_the_cached_binary(patched_llama_server: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "halospec_tui", "build-server"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(ROOT),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == patched_llama_server
    assert "(cached)" in out.stderr
    info = Path(patched_llama_server).parent / "build.json"
    assert '"patch": "llama-server-per-request-draft.patch"' in info.read_text()


def test_a_failed_build_leaves_no_cache_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A patch that does not apply: the command fails with one line naming the step and the
    log, exit 1, and the cache holds no entry and no temporary folder."""
    bad = tmp_path / "patches" / llamacpp_build.PATCH_NAME
    bad.parent.mkdir()
    bad.write_text(
        "--- a/tools/server/no-such-file.cpp\n+++ b/tools/server/no-such-file.cpp\n"
        "@@ -1 +1 @@\n-old\n+new\n"
    )
    cache = tmp_path / "cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONPATH": str(ROOT)}
    code = (
        "import sys; from pathlib import Path; "
        "from halospec_tui.backends import llamacpp_build as lb; "
        f"lb.patch_file = lambda: Path({str(bad)!r}); "
        "from halospec_tui.cli import main; sys.exit(main(['build-server']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env
    )
    assert out.returncode == 1, out.stderr
    err = out.stderr.strip().splitlines()[-1]
    assert "applying llama-server-per-request-draft.patch failed" in err
    assert "Traceback" not in out.stderr
    root = cache / "halospec-tui" / "llama-server"
    left = sorted(p.name for p in root.iterdir())
    assert [n for n in left if not n.endswith(".log") and n != ".lock"] == []
    assert any(n.startswith("build-") and n.endswith(".log") for n in left)  # named in err
