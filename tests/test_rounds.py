"""The sweep in rounds on the real embedded engine: order, contamination, until decided.

Everything here is a real Session: the embedded engine in its own process over loopback HTTP,
real load burners, and (for foreign CPU) a real busy process that is not the harness's."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from halospec_tui.core.events import RoundStarted, Standings, StepResult
from halospec_tui.session import Session
from tests.conftest import ROOT, fast_profile
from tests.helpers import Recorder, ScriptedServer, ok_reply


def _run(session: Session, timeout: float = 120.0) -> Recorder:
    rec = Recorder()
    session.bus.subscribe(rec, inline=True)
    session.start_backend()
    t = threading.Thread(target=session.run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive()
    return rec


def test_interleaved_rounds_give_each_mode_its_own_steps(tmp_path: Path) -> None:
    p = fast_profile(modes=["fixed_1", "fixed_4", "adaptive"], steps_fixed=3, steps_adaptive=5)
    s = Session.create(p, tmp_path / "run")
    try:
        rec = _run(s)
    finally:
        s.close()
    rows = [e.row for e in rec.of(StepResult)]
    # rounds 1-3 hold one step of every mode, rounds 4-5 only the adaptive mode's
    by_round: dict[int, list[str]] = {}
    for r in rows:
        by_round.setdefault(r.round, []).append(r.mode)
    assert sorted(by_round) == [1, 2, 3, 4, 5]
    assert all(sorted(by_round[i]) == ["adaptive", "fixed_1", "fixed_4"] for i in (1, 2, 3))
    assert by_round[4] == by_round[5] == ["adaptive"]
    for mode, n in (("fixed_1", 3), ("fixed_4", 3), ("adaptive", 5)):
        assert [r.step for r in rows if r.mode == mode] == list(range(1, n + 1))
    assert [e.round for e in rec.of(RoundStarted)] == [1, 2, 3, 4, 5]
    summary = s.runner.summary
    assert summary is not None and summary["order"] == "interleaved"
    rec_ = summary["recommendation"]
    assert rec_["mode"] == summary["winner"] and rec_["mode"] in rec_["tied"]
    assert rec_["paired"] is True and rec_["metric"] == "tokens_per_s"
    labels = {m["mode"]: m["confidence"]["label"] for m in summary["modes"]}
    assert labels[rec_["leader"]] == "best" and rec_["leader"] in rec_["tied"]
    assert rec.of(Standings)[-1].final
    # the results file carries the round of every row
    with (tmp_path / "run" / "results.csv").open() as f:
        assert [int(r["round"]) for r in csv.DictReader(f)] == [r.round for r in rows]


def test_same_seed_same_order(tmp_path: Path) -> None:
    orders = []
    for i in range(2):
        s = Session.create(fast_profile(steps_fixed=3, steps_adaptive=3), tmp_path / f"r{i}")
        try:
            rec = _run(s)
        finally:
            s.close()
        orders.append([e.modes for e in rec.of(RoundStarted)])
    assert orders[0] == orders[1]


def test_sequential_order_is_halospecs(tmp_path: Path) -> None:
    s = Session.create(fast_profile(order="sequential"), tmp_path / "run")
    try:
        rec = _run(s)
    finally:
        s.close()
    assert [e.row.mode for e in rec.of(StepResult)] == (
        ["fixed_1"] * 3 + ["fixed_4"] * 3 + ["adaptive"] * 4
    )
    assert s.runner.summary["recommendation"]["paired"] is False  # type: ignore[index]


def test_manual_load_in_interleaved_rounds_is_flagged_and_left_out(tmp_path: Path) -> None:
    p = fast_profile(modes=["fixed_1", "fixed_3"], steps_fixed=400, foreign_cpu_limit=0.0)
    s = Session.create(p, tmp_path / "run")
    rec = Recorder()
    s.bus.subscribe(rec, inline=True)
    try:
        s.start_backend()
        t = threading.Thread(target=s.run, daemon=True)
        t.start()
        while len(rec.of(StepResult)) < 6:
            time.sleep(0.02)
        s.runner.toggle_load()
        n = len(rec.of(StepResult))
        while len(rec.of(StepResult)) < n + 4:
            time.sleep(0.02)
        s.runner.toggle_load()
        n = len(rec.of(StepResult))
        while len(rec.of(StepResult)) < n + 4:
            time.sleep(0.02)
        s.runner.cancel()
        t.join(20)
    finally:
        s.close()
    rows = [e.row for e in rec.of(StepResult)]
    loaded = [r for r in rows if r.phase == "load"]
    assert loaded and all(r.contaminated == "load switched on by hand" for r in loaded)
    assert {r.mode for r in loaded} == {"fixed_1", "fixed_3"}  # the round met it in both
    assert all(not r.contaminated for r in rows if r.phase != "load")
    summary = s.runner.summary
    assert summary is not None and summary["cancelled"]
    assert summary["recommendation"]["excluded_steps"] == len(loaded)
    flagged = {m["mode"]: m["contaminated_steps"] for m in summary["modes"]}
    assert sum(flagged.values()) == len(loaded)


def spec_reply(k: int, tokens: int = 16) -> dict:
    """A llama-server-like reply whose counters say k tokens were drafted per verify step."""
    steps = -(-(tokens - 1) // (k + 1))
    return ok_reply(tokens=tokens, draft_n=k * steps, accepted=tokens - 1 - steps)


def test_until_decided_stops_early_and_drops_clearly_worse_modes(tmp_path: Path) -> None:
    """A server (real HTTP on loopback) that takes 40 ms at k 1 and 20 ms at k 5 and 6: racing
    drops k 1 after the planned rounds; with no indifference margin, the equal k 5 and k 6 race
    on until the tie stops shrinking (or one is separated by chance), well before the budget
    of 60 rounds."""
    rng = random.Random(5)
    cost = {1: 0.080, 5: 0.020, 6: 0.020}

    def script(i: int) -> object:
        k = int(srv.bodies[i]["speculative.n_max"])
        return ("sleep", cost[k] * rng.uniform(0.97, 1.03), spec_reply(k))

    with ScriptedServer(script) as srv:
        p = fast_profile(
            modes=["fixed_1", "fixed_5", "fixed_6"],
            steps_fixed=5,
            until="decided",
            max_rounds=60,
            margin=0.0,
        )
        p.backend.kind = "openai"
        p.backend.url = srv.url
        s = Session.create(p, tmp_path / "run")
        try:
            rec = _run(s, timeout=120)
        finally:
            s.close()
    summary = s.runner.summary
    assert summary is not None and summary["until"] == "decided"
    rows = [e.row for e in rec.of(StepResult)]
    steps = {m: sum(1 for r in rows if r.mode == m) for m in ("fixed_1", "fixed_5", "fixed_6")}
    modes = {m["mode"]: m for m in summary["modes"]}
    assert {m["draft_control"]["verdict"] for m in modes.values()} == {"applied"}
    dropped = modes["fixed_1"]["eliminated_after_round"]
    assert "drops out" in rec.notices()
    assert summary["rounds"] < 60
    # k 1 ran no round after it dropped out; k 5 and k 6 ran every round to the end
    assert steps["fixed_1"] == dropped >= 5
    assert steps["fixed_5"] == steps["fixed_6"] == summary["rounds"]
    assert "decided after" in rec.notices() or "stopped shrinking" in rec.notices()
    assert summary["recommendation"]["mode"] in ("fixed_5", "fixed_6")


def _burn() -> subprocess.Popen[bytes]:
    """A busy process that is not the harness's: a sibling of the harness process."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def test_a_foreign_busy_process_is_flagged_in_every_step_it_met(tmp_path: Path) -> None:
    """The real CLI (headless) as one process, a busy process beside it: the steps that ran
    while it burned are flagged, summary.json says how many were left out."""
    out = tmp_path / "run"
    prof = tmp_path / "p.toml"
    p = fast_profile(modes=["fixed_2", "fixed_4"], steps_fixed=60, steps_adaptive=1)
    p.run.cooldown_s = 0.05
    p.run.foreign_cpu_limit = 50.0
    p.save(prof)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    harness = subprocess.Popen(
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
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    burner = None
    try:
        csv_path = out / "results.csv"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if csv_path.exists() and len(csv_path.read_text().splitlines()) > 10:
                break
            time.sleep(0.1)
        t_on = time.time()
        burner = _burn()
        time.sleep(3.0)
        t_off = time.time()
        burner.send_signal(signal.SIGKILL)
        burner.wait(5)
        stdout, _ = harness.communicate(timeout=120)
    finally:
        if burner is not None and burner.poll() is None:
            burner.kill()
        if harness.poll() is None:
            harness.kill()
    assert harness.returncode == 0, stdout.decode()[-2000:]
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))

    def at(r: dict[str, str]) -> float:
        return datetime.fromisoformat(r["timestamp"]).timestamp()

    during = [r for r in rows if t_on + 0.8 <= at(r) <= t_off]
    assert len(during) >= 3
    assert all(r["contaminated"].startswith("foreign CPU") for r in during), [
        (r["foreign_cpu"], r["contaminated"]) for r in during
    ]
    summary = json.loads((out / "summary.json").read_text())
    flagged = sum(1 for r in rows if r["contaminated"])
    assert summary["recommendation"]["excluded_steps"] == flagged >= len(during)
    assert "contaminated" in stdout.decode()


def test_the_harness_own_load_burners_are_not_foreign_cpu(tmp_path: Path) -> None:
    """A scheduled load's burners are the harness's children: the steps that run beside
    them are load steps, not steps that met someone else's job. (The list of our processes
    used to be refreshed every 2 s only, so a burner just started counted as foreign and
    its first ~2 s of load steps were flagged and left out.)"""
    p = fast_profile(modes=["fixed_2", "fixed_4"], steps_fixed=40, steps_adaptive=1)
    p.run.order = "sequential"  # fixed_4's steps all under the load, fixed_2's all without
    p.run.cooldown_s = 0.02
    p.run.foreign_cpu_limit = 50.0
    p.load.scheduled = True
    p.load.modes = ["fixed_4"]
    p.load.start_step = 2
    p.load.duration_s = 2.0
    p.load.cores = 1
    s = Session.create(p, tmp_path / "run")
    rec = Recorder()
    s.bus.subscribe(rec, inline=True)
    try:
        s.start_backend()
        s.run()
    finally:
        s.close()
    load_rows = [e.row for e in rec.of(StepResult) if e.row.phase == "load"]
    assert len(load_rows) >= 5
    foreign = sorted(r.foreign_cpu for r in load_rows if r.foreign_cpu is not None)
    assert foreign and foreign[len(foreign) // 2] < 50.0, foreign  # the median: others' jobs
    # on a shared test machine may still flag a step here and there
