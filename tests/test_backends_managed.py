"""The managed llama-server backend's channels, fast: a stand-in binary (tests/data/
fake_llama_server.py: llama-server's flags and HTTP API over the embedded engine) lets the
restart channel, pool eviction and startup failures run in seconds, with or without the real
binary. The real thing is tested in test_backends_llamacpp.py."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from halospec_tui import profile as P
from halospec_tui.backends.base import BackendUnavailable
from halospec_tui.backends.llamacpp_managed import ManagedLlamaCppBackend, spec_args
from halospec_tui.core.events import Event, Notice, StepResult
from halospec_tui.session import Session
from tests.helpers import Recorder

DATA = Path(__file__).parent / "data"


@pytest.fixture
def fake(tmp_path: Path) -> tuple[str, str]:
    """(binary, model): an executable llama-server stand-in and a model file for it."""
    binary = tmp_path / "llama-server"
    binary.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{DATA / "fake_llama_server.py"}" "$@"\n'
    )
    binary.chmod(0o755)
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    return str(binary), str(model)


def profile(fake: tuple[str, str], modes: list[str], channel: str, **backend: Any) -> P.Profile:
    p = P.Profile(name="managed-fake")
    p.run.modes = modes
    p.run.warmup = 0
    p.run.steps_fixed = 2
    p.run.steps_adaptive = 3
    p.run.cooldown_s = 0.0
    p.run.foreign_cpu_limit = 0.0  # other jobs on a shared test machine are not the point here
    p.request.max_tokens = 24
    p.request.timeout_s = 30.0
    p.backend.kind = "llamacpp-managed"
    p.backend.draft_channel = channel
    p.backend.binary, p.backend.model_path = fake
    p.backend.startup_timeout_s = 60.0
    for k, v in backend.items():
        setattr(p.backend, k, v)
    lat = p.controller.latency  # forced down from 4 at once: 4, 2, 1
    lat.default_low_ms, lat.default_high_ms, lat.step_down = 0.0, 0.001, 2
    return p


def run(p: P.Profile, out: Path) -> tuple[Session, Recorder, list[int], int]:
    s = Session.create(p, out)
    rec = Recorder()
    s.bus.subscribe(rec, inline=True)
    seen: set[int] = set()
    backend = s.backend
    assert isinstance(backend, ManagedLlamaCppBackend)
    alive_max = 0

    def watch(ev: Event) -> None:  # every process the backend ran, and how many at once
        nonlocal alive_max
        servers = list(backend.servers.values())
        alive_max = max(alive_max, sum(srv.alive() for srv in servers))
        for srv in servers:
            seen.update(x for x in (srv.server_pid, srv.child.pid if srv.child else None) if x)

    s.bus.subscribe(watch, inline=True)
    try:
        s.start_backend()
        t = threading.Thread(target=s.run, daemon=True)
        t.start()
        t.join(120)
        assert not t.is_alive()
    finally:
        s.close()
    return s, rec, sorted(seen), alive_max


def gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        time.sleep(0.1)
    return False


def test_restart_channel_one_server_restarted_per_k(tmp_path: Path, fake: tuple[str, str]) -> None:
    p = profile(fake, ["fixed_2", "fixed_5", "adaptive"], "restart")
    p.run.order = "sequential"  # the exact restart sequence below is HaloSpec's mode order
    s, rec, pids, most = run(p, tmp_path / "run")
    summary = s.runner.summary
    assert summary is not None and summary["draft_channel"] == "restart"
    assert {m["mode"]: m["draft_control"]["verdict"] for m in summary["modes"]} == {
        "fixed_2": "applied",
        "fixed_5": "applied",
        "adaptive": "applied",
    }
    rows = [e.row for e in rec.of(StepResult)]
    assert [r.draft_length for r in rows if r.mode == "adaptive"] == [4, 2, 1]
    assert all(r.observed_k <= r.draft_length + 1e-9 for r in rows)
    logs = sorted(x.name for x in (tmp_path / "run").glob("llama-server-*.log"))
    assert logs == [
        "llama-server-k1.log",
        "llama-server-k2-2.log",
        "llama-server-k2.log",
        "llama-server-k4.log",
        "llama-server-k5.log",
    ]
    assert most == 1  # never two at once
    ad = summary["modes"][2]["draft_control"]["evidence"]["channel"]
    assert ad["restarts_total"] == 4 and len(ad["servers_started"]) == 3
    assert any("every change of k restarts llama-server" in n.text for n in rec.of(Notice))
    assert len(pids) >= 2 and gone(pids)


def test_pool_eviction_keeps_counters_monotone(tmp_path: Path, fake: tuple[str, str]) -> None:
    p = profile(fake, ["fixed_1", "fixed_3", "adaptive"], "pool", pool_max_servers=2)
    s, rec, pids, most = run(p, tmp_path / "run")
    summary = s.runner.summary
    assert summary is not None
    assert {m["draft_control"]["verdict"] for m in summary["modes"]} == {"applied"}
    for m in summary["modes"]:
        assert all(v >= 0 for v in m["draft_control"]["evidence"]["metrics_delta"].values())
    assert most <= 2
    assert gone(pids)


def test_request_channel_on_managed_server_is_not_applied(
    tmp_path: Path, fake: tuple[str, str]
) -> None:
    s, rec, pids, _ = run(
        profile(fake, ["fixed_1", "fixed_5"], "request", server_n_max=3), tmp_path / "run"
    )
    summary = s.runner.summary
    assert summary is not None and summary["winner"] is None
    assert {m["draft_control"]["verdict"] for m in summary["modes"]} == {"not_applied"}
    assert any("expect verdict not_applied" in n.text for n in rec.of(Notice))
    assert gone(pids)


def test_startup_failure_has_the_log_lines(
    tmp_path: Path, fake: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_FAIL", "1")
    b = ManagedLlamaCppBackend(profile(fake, ["fixed_3"], "pool"))
    b.set_run_dir(tmp_path)
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable) as err:
        b.start()
    b.close()
    assert time.monotonic() - t0 < 20
    assert "exited during startup (code 1)" in err.value.reason
    assert "error loading model" in err.value.reason and "llama-server-k3.log" in err.value.reason


def test_missing_binary_and_model_say_how_to_install(tmp_path: Path, fake: tuple[str, str]) -> None:
    p = profile(fake, ["fixed_3"], "pool", binary=str(tmp_path / "nope"))
    with pytest.raises(BackendUnavailable, match="not an executable"):
        ManagedLlamaCppBackend(p).start()
    p = profile(fake, ["fixed_3"], "pool", model_path=str(tmp_path / "none.gguf"))
    with pytest.raises(BackendUnavailable, match="no such file"):
        ManagedLlamaCppBackend(p).start()


def test_spec_args_per_type() -> None:
    b = P.BackendSettings()
    assert spec_args(b, 4, "d.gguf") == [
        "--spec-type",
        "draft-simple",
        "--spec-draft-model",
        "d.gguf",
        "--spec-draft-n-max",
        "4",
    ]
    b.spec_type = "ngram-simple"
    assert spec_args(b, 5, "d.gguf") == [
        "--spec-type",
        "ngram-simple",
        "--spec-draft-n-max",
        "5",
        "--spec-ngram-simple-size-m",
        "5",
    ]
    b.spec_type, b.server_n_max = "draft-simple", 0
    assert "--spec-draft-n-max" not in spec_args(b, None, "d.gguf")  # the server's default
    b.n_min = 2
    assert spec_args(b, 6, "d.gguf")[-2:] == ["--spec-draft-n-min", "2"]


def test_draft_build_tells_the_llama_server_builds_apart() -> None:
    """/props says which build answers: our patch's marker, an old build's echo of
    speculative.n_max, or neither (a stock current build, which ignores the key)."""
    from halospec_tui.backends.llamacpp import BUILD_NOTES, draft_build

    current = {"default_generation_settings": {"params": {"speculative.types": "none"}}}
    assert draft_build({**current, "per_request_draft": True}) == "patched"
    assert draft_build(current) == "current"
    old = {"default_generation_settings": {"params": {"speculative.n_max": 16}}}
    assert draft_build(old) == "older"
    assert draft_build(None) == "" and draft_build({"x": 1}) == ""
    assert "build-server" in BUILD_NOTES["current"]  # what to do, said where it is seen


def test_patched_binary_not_built_says_how(
    tmp_path: Path, fake: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    p = profile(fake, ["fixed_3"], "request", binary="patched")
    with pytest.raises(BackendUnavailable, match="halospec-tui build-server"):
        ManagedLlamaCppBackend(p).start()


def test_a_start_that_dies_of_sigill_is_retried_without_repacked_kernels(
    tmp_path: Path, fake: tuple[str, str]
) -> None:
    """llama.cpp's native build dies of SIGILL at start-up where the CPU reports AMX but its
    worker threads may not use it (llama.cpp PR 26954). The stand-in binary does what such a
    build does, until it is given --no-repack: the backend starts it again once with that
    flag, says so, and the sweep runs."""
    binary = tmp_path / "llama-server-amx"
    binary.write_text(
        '#!/bin/sh\ncase " $* " in *" --no-repack "*) ;; *) kill -ILL $$ ;; esac\n'
        f'exec "{fake[0]}" "$@"\n'
    )
    binary.chmod(0o755)
    p = profile((str(binary), fake[1]), ["fixed_1", "fixed_3"], "pool")
    _, rec, pids, _ = run(p, tmp_path / "run")
    ok = {e.row.mode for e in rec.of(StepResult) if e.row.success}
    assert ok == {"fixed_1", "fixed_3"}
    assert "illegal instruction" in rec.notices() and "--no-repack" in rec.notices()
    starts = [
        ln
        for ln in (tmp_path / "run" / "llama-server-k1.log").read_text().splitlines()
        if ln.startswith("$ ")
    ]
    assert len(starts) == 2 and "--no-repack" not in starts[0] and "--no-repack" in starts[1]
    assert gone(pids)


def test_a_start_that_dies_of_something_else_is_not_retried(
    tmp_path: Path, fake: tuple[str, str]
) -> None:
    binary = tmp_path / "llama-server-broken"
    binary.write_text("#!/bin/sh\necho 'error: unknown model format' >&2\nexit 1\n")
    binary.chmod(0o755)
    b = ManagedLlamaCppBackend(profile((str(binary), fake[1]), ["fixed_3"], "pool"))
    with pytest.raises(BackendUnavailable) as err:
        b.start()
    b.close()
    assert "unknown model format" in err.value.reason and "--no-repack" not in err.value.reason
