"""The monitor's UI-free parts: bounded state, batching, percentiles, plots (no Textual)."""

from __future__ import annotations

import threading
import time

from halospec_tui.core.events import (
    LoadChanged,
    ModeStarted,
    Paused,
    PhaseChanged,
    RunFinished,
    RunStarted,
    StepResult,
    StepRow,
)
from halospec_tui.tui import plots
from halospec_tui.tui.pump import EventPump
from halospec_tui.tui.state import HISTORY, LOG_PENDING_MAX, PCT_WINDOW, MonitorState
from halospec_tui.tui.widgets.charts import render_plot


def _row(i: int, ok: bool = True, phase: str = "steady", k: int = 4) -> StepRow:
    return StepRow(
        global_step=i,
        step=i,
        mode="adaptive",
        phase=phase,
        draft_length=k,
        success=int(ok),
        latency_ms=100.0 + i % 7 if ok else 0.0,
        tokens=16,
        acceptance=0.5,
        error="" if ok else "boom",
    )


def test_state_memory_is_bounded_over_100k_steps() -> None:
    s = MonitorState(clock=lambda: 0.0, event_times=False)
    s.apply(
        RunStarted(
            run_dir="r",
            profile="p",
            backend="b",
            draft_channel="request",
            model="m",
            modes=("adaptive",),
            total_steps=100_000,
        )
    )
    s.apply(
        ModeStarted(
            mode="adaptive", index=0, count=1, steps=100_000, warmup=0, controller="latency"
        )
    )
    for i in range(1, 100_001):
        s.apply(StepResult(row=_row(i, ok=i % 1000 != 0)))
    m = s.mode
    assert m is not None and s.steps_done == 100_000 and s.failures == 100
    assert len(m.latency) <= HISTORY and len(m.draft_length) <= HISTORY
    assert len(m._window) <= PCT_WINDOW and m.windowed
    assert len(s.pending_log) <= LOG_PENDING_MAX
    p50, p95 = m.latency_pct()
    assert p50 is not None and p95 is not None and 100 <= p50 <= p95 <= 106


def test_phase_banner_and_time_left() -> None:
    now = [0.0]
    s = MonitorState(clock=lambda: now[0], event_times=False)
    s.apply(
        RunStarted(
            run_dir="r",
            profile="p",
            backend="b",
            draft_channel="request",
            model="m",
            modes=("fixed_1",),
            total_steps=10,
        )
    )
    s.apply(ModeStarted(mode="fixed_1", index=0, count=1, steps=10, warmup=0, controller="fixed"))
    s.apply(PhaseChanged(mode="fixed_1", phase="steady", step=1))
    assert s.banner_phase() == "steady"
    now[0] = 5.0
    for i in range(1, 6):
        s.apply(StepResult(row=_row(i)))
    assert s.time_left() == 5.0
    s.apply(LoadChanged(on=True, cores=2, scheduled=True, duration_s=30.0))
    now[0] = 7.0
    assert s.banner_phase() == "load" and s.load_elapsed() == 2.0
    s.apply(Paused(True))
    assert s.banner_phase() == "paused"
    s.apply(Paused(False))
    s.apply(LoadChanged(on=False, cores=2, scheduled=True, duration_s=30.0))
    s.apply(RunFinished(run_dir="r", summary={"modes": [], "winner": None}, cancelled=True))
    assert s.banner_phase() == "done" and s.cancelled
    texts = [e.text for e in s.take_log()[0]]
    assert any("load ON: 2 cores" in t for t in texts) and any("load OFF" in t for t in texts)


def test_pump_batches_a_flood_into_few_posts() -> None:
    batches: list[int] = []
    pump = EventPump(lambda b: batches.append(len(b)), interval=0.1, min_gap=0.1).start()
    t0 = time.monotonic()
    for i in range(20_000):
        pump(StepResult(row=_row(i + 1)))
    time.sleep(0.35)
    pump.stop()
    elapsed = time.monotonic() - t0
    assert sum(batches) == 20_000
    assert len(batches) <= elapsed / 0.1 + 2


def test_pump_hands_over_urgent_events_at_once() -> None:
    got = threading.Event()
    pump = EventPump(lambda b: got.set(), interval=10.0, min_gap=0.0).start()
    pump(Paused(True))
    assert got.wait(2.0)
    pump.stop()


def test_plots_from_rows_render_without_colour() -> None:
    rows = [
        _row(i, phase="steady" if i < 6 else "load" if i < 12 else "recovery", k=1 + i % 4)
        for i in range(1, 20)
    ]
    series = plots.series_from_rows(rows)
    assert list(series) == ["adaptive"] and len(series["adaptive"].steps) == 19
    summary = {
        "modes": [
            {"mode": "fixed_1", "avg_ms": 100.0, "p95_ms": 120.0, "score": 170.0},
            {"mode": "adaptive", "avg_ms": 104.0, "p95_ms": 106.0, "score": 160.0},
        ],
        "winner": "adaptive",
    }
    made = plots.all_plots(summary, series)
    assert made[0][0].startswith("fixed modes") and made[1][0].startswith("score by mode")
    assert len(made) == 5
    for _, _, draw in made:
        text = render_plot(draw, 60, 14, colorless=True)
        assert "plot failed" not in text.plain and "┌" in text.plain
        assert not text.spans
