"""The runner through a Session: commands from another thread, phases, faults, verdicts.

Faults use ScriptedServer, a real HTTP server on loopback that misbehaves on cue; everything
else runs against the embedded engine in its own process."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from halospec_tui.core.events import (
    ControllerDecision,
    LoadChanged,
    Notice,
    Paused,
    PhaseChanged,
    StepResult,
)
from halospec_tui.core.results import load_rows
from halospec_tui.session import Session
from tests.conftest import fast_profile
from tests.helpers import Recorder, ScriptedServer, ok_reply


def _start(session: Session) -> tuple[threading.Thread, Recorder]:
    rec = Recorder()
    session.bus.subscribe(rec, inline=True)
    session.start_backend()
    t = threading.Thread(target=session.run, daemon=True)
    t.start()
    return t, rec


def _wait_rows(rec: Recorder, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(rec.of(StepResult)) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(rec.of(StepResult)) >= n


def test_full_fast_sweep_on_embedded_engine(tmp_path: Path) -> None:
    s = Session.create(fast_profile(), tmp_path / "run")
    try:
        t, rec = _start(s)
        t.join(60)
        assert not t.is_alive()
        rows = [e.row for e in rec.of(StepResult)]
        # interleaved rounds: one step of every mode per round, each mode its own steps
        assert sorted(r.mode for r in rows) == ["adaptive"] * 4 + ["fixed_1"] * 3 + ["fixed_4"] * 3
        assert [r.round for r in rows if r.mode == "adaptive"] == [1, 2, 3, 4]
        assert all(r.success for r in rows)
        k1 = [r.observed_k for r in rows if r.mode == "fixed_1"]
        k4 = [r.observed_k for r in rows if r.mode == "fixed_4"]
        assert max(k1) <= 1.0 and min(k4) > 2.5  # the server drafted what was asked
        assert s.runner.summary is not None
        assert {m["draft_control"]["verdict"] for m in s.runner.summary["modes"]} == {"applied"}
        assert len(load_rows(s.writer.csv_path)) == 10
        # the evaluation table (adaptive + other modes) is built from slim copies of the rows
        assert sorted((r.mode, r.step) for r in s.runner.eval_rows) == sorted(
            (r.mode, r.step) for r in rows
        )
        assert s.runner.summary["evaluation"] is not None
    finally:
        s.close()


def test_pause_stops_new_steps_until_resumed(tmp_path: Path) -> None:
    s = Session.create(fast_profile(steps_fixed=400, modes=["fixed_2"]), tmp_path / "run")
    try:
        t, rec = _start(s)
        _wait_rows(rec, 3)
        assert s.runner.toggle_pause() is True
        time.sleep(0.5)  # the step in flight may still land
        n = len(rec.of(StepResult))
        time.sleep(1.0)
        assert len(rec.of(StepResult)) == n
        assert s.runner.toggle_pause() is False
        _wait_rows(rec, n + 2)
        assert [e.paused for e in rec.of(Paused)] == [True, False]
        s.runner.cancel()
        t.join(10)
        assert not t.is_alive()
    finally:
        s.close()


def test_manual_load_gives_load_then_recovery_rows(tmp_path: Path) -> None:
    s = Session.create(fast_profile(steps_fixed=400, modes=["fixed_3"]), tmp_path / "run")
    try:
        t, rec = _start(s)
        _wait_rows(rec, 3)
        assert s.runner.toggle_load() is True
        n = len(rec.of(StepResult))
        _wait_rows(rec, n + 3)
        assert s.runner.toggle_load() is False
        n = len(rec.of(StepResult))
        _wait_rows(rec, n + 3)
        s.runner.cancel()
        t.join(10)
        phases = [e.row.phase for e in rec.of(StepResult)]
        assert phases[0] == "steady" and "load" in phases and phases[-1] == "recovery"
        assert [e.on for e in rec.of(LoadChanged)] == [True, False]
        assert [e.phase for e in rec.of(PhaseChanged)] == ["warmup", "steady", "load", "recovery"]
        assert not s.load.on
    finally:
        s.close()


@pytest.mark.parametrize("off", ["after the request", "before the request"])
def test_load_within_one_request_is_followed_by_recovery_rows(tmp_path: Path, off: str) -> None:
    """Load that comes on after a step's phase was taken marks that row `load`, also when it
    goes off again before the request ends; the rows after it are `recovery`. They used to
    be `steady` (the phase only looked at the load at the start of a step), which made the
    monitor's load-key test fail about one time in six."""
    s = Session.create(fast_profile(steps_adaptive=6, modes=["adaptive:heuristic"]), tmp_path / "r")

    def load_during_step_3(e: Any) -> None:  # inline: runs in the runner's thread
        if isinstance(e, ControllerDecision) and e.step == 3:
            s.load.start()  # after the step's phase was taken, before its request
            if off == "before the request":
                s.load.stop()
        elif isinstance(e, StepResult) and e.row.step == 3 and s.load.on:
            s.load.stop()  # before step 4 looks

    try:
        s.bus.subscribe(load_during_step_3, inline=True)
        t, rec = _start(s)
        t.join(60)
        assert not t.is_alive()
        phases = [e.row.phase for e in rec.of(StepResult)]
        assert phases == ["steady", "steady", "load", "recovery", "recovery", "recovery"]
        assert [e.phase for e in rec.of(PhaseChanged)] == ["warmup", "steady", "recovery"]
        assert not s.load.on
    finally:
        s.close()


def test_failing_steps_become_rows_and_the_run_goes_on(tmp_path: Path) -> None:
    def script(i: int) -> Any:
        return {
            0: 500,
            1: b"{not json",
            2: {"choices": [{"message": {"content": "x"}}]},
            3: ("sleep", 1.5, ok_reply()),
        }.get(i, ok_reply())

    with ScriptedServer(script) as srv:
        p = fast_profile(modes=["fixed_2"], warmup=0, steps_fixed=6)
        p.backend.kind = "openai"
        p.backend.url = srv.url
        p.request.attempts = 1
        p.request.timeout_s = 0.5
        s = Session.create(p, tmp_path / "run")
        try:
            t, rec = _start(s)
            t.join(30)
            rows = [e.row for e in rec.of(StepResult)]
        finally:
            s.close()
    assert [r.success for r in rows] == [0, 0, 0, 0, 1, 1]
    assert "HTTP 500" in rows[0].error
    assert "malformed JSON" in rows[1].error
    assert "usage" in rows[2].error
    assert "timeout" in rows[3].error
    assert all(r.latency_ms == 0 and r.tokens == 0 for r in rows[:4])
    assert len(rec.of(Notice)) >= 4
    assert srv.bodies[0]["speculative.n_max"] == 2 and srv.bodies[0]["max_tokens"] == 24


def test_retries_with_backoff(tmp_path: Path) -> None:
    with ScriptedServer(lambda i: 503 if i < 2 else ok_reply()) as srv:
        p = fast_profile(modes=["fixed_1"], warmup=0, steps_fixed=1)
        p.backend.kind = "openai"
        p.backend.url = srv.url
        p.request.backoff_ms = 50
        s = Session.create(p, tmp_path / "run")
        try:
            t0 = time.monotonic()
            t, rec = _start(s)
            t.join(10)
        finally:
            s.close()
    row = rec.of(StepResult)[0].row
    assert row.success == 1 and row.attempts == 3
    assert s.runner.eval_rows == []  # no evaluation table for one fixed mode: nothing kept
    assert time.monotonic() - t0 >= 0.15  # 50 ms then 100 ms


def test_server_that_ignores_k_is_called_out_not_ranked(tmp_path: Path) -> None:
    # the server always drafts 3 per verify step, whatever the request asks
    with ScriptedServer(lambda i: ok_reply(tokens=16, draft_n=12, accepted=12)) as srv:
        p = fast_profile(modes=["fixed_2", "fixed_3", "fixed_5"], warmup=0, steps_fixed=3)
        p.backend.kind = "openai"
        p.backend.url = srv.url
        s = Session.create(p, tmp_path / "run")
        try:
            t, rec = _start(s)
            t.join(20)
        finally:
            s.close()
    summary = s.runner.summary
    assert summary is not None
    assert {m["mode"]: m["draft_control"]["verdict"] for m in summary["modes"]} == {
        "fixed_2": "not_applied",
        "fixed_3": "not_applied",
        "fixed_5": "not_applied",
    }
    assert summary["winner"] is None
    assert any("NOT applied" in n.text for n in rec.of(Notice))
