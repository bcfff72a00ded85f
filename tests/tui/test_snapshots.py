"""Snapshots of the monitor mid-run and of the summary screen at the four sizes a user runs
it at (80x24, 100x30, 120x40, 200x60), with pytest-textual-snapshot.

Deterministic by construction: the ScriptedBackend answers with fixed latencies and counters
and parks request 26 (adaptive step 8) on a gate, so the screen is taken at the same point of
the same run every time; the app's clock is frozen (elapsed 0:00, time left --:--) and the run
folder is the relative `run` inside the test's own working directory.
Update after an intended change: pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

from pathlib import Path

import pytest

from halospec_tui.session import Session
from halospec_tui.tui.app import MonitorApp, ReportApp
from halospec_tui.tui.report import load_report
from halospec_tui.tui.widgets.charts import PlotView
from tests.tui.scripted import ScriptedBackend, scripted_profile, wait_until

GATE = 26  # fixed_2: 2 warmup + 6 steps, fixed_5: 2 + 6, adaptive: 2 warmup, then step 8
STEPS_BEFORE_GATE = 19


def mid_run_app() -> tuple[MonitorApp, ScriptedBackend]:
    backend = ScriptedBackend(gate_at=GATE)
    session = Session.create(scripted_profile(), "run", backend=backend)
    app = MonitorApp(session, clock=lambda: 1_000.0, event_times=False, tick_interval=3600)
    return app, backend


async def _at_gate(pilot) -> None:  # type: ignore[no-untyped-def]
    app, state = pilot.app, pilot.app.state
    backend = app.session.backend

    def parked() -> bool:
        """the runner waits on request 26 and the monitor has seen everything before it"""
        return (
            backend.reached.is_set()
            and state.steps_done == STEPS_BEFORE_GATE
            and state.ctl_step == 8
            and state.standings_round == 7  # computed off the sweep's thread: wait for it
        )

    await wait_until(pilot, parked)
    await pilot.pause(0.3)


SIZES = [(80, 24), (100, 30), (120, 40), (200, 60)]
IDS = [f"{w}x{h}" for w, h in SIZES]


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_main_screen_mid_run(snap_compare, tmp_path: Path, monkeypatch, size) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    app, backend = mid_run_app()
    try:
        assert snap_compare(app, terminal_size=size, run_before=_at_gate)
    finally:
        backend.gate.set()


def finished_report() -> ReportApp:
    """The scripted run to its end, read back as `halospec-tui report run` reads it."""
    session = Session.create(scripted_profile(), "run", backend=ScriptedBackend())
    session.start_backend()
    session.run()
    session.close()
    return ReportApp(load_report(Path("run")))


async def _summary_drawn(pilot) -> None:  # type: ignore[no-untyped-def]
    screen = pilot.app.screen

    def drawn() -> bool:
        """every plot drawn, the table sized and the "more below" line written"""
        plots = list(screen.query(PlotView))
        return all("┌" in str(v.content) for v in plots if v.region.height > 0) and bool(
            str(screen.query_one("#summary-more").content)
        )

    await wait_until(pilot, drawn)
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_summary_screen(snap_compare, tmp_path: Path, monkeypatch, size) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    assert snap_compare(finished_report(), terminal_size=size, run_before=_summary_drawn)
