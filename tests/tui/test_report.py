"""`halospec-tui report`: the summary screen for a finished run folder or a CSV, including
one written by the original HaloSpec (its eight columns only)."""

from __future__ import annotations

from pathlib import Path

from halospec_tui.tui.app import ReportApp, run_report
from halospec_tui.tui.report import load_report
from halospec_tui.tui.screens.summary import SummaryScreen
from halospec_tui.tui.widgets.charts import PlotView
from halospec_tui.tui.widgets.modes_table import ModesTable
from tests.tui.scripted import wait_until


def original_csv(path: Path) -> Path:
    """What HaloSpec's results_phase0.csv looks like: 8 columns, phases in adaptive only."""
    lines = ["global_step,step,mode,phase,draft_length,success,latency_ms,tokens"]
    g = 0
    for k in (1, 4, 8):
        for step in range(1, 11):
            g += 1
            lines.append(f"{g},{step},fixed_{k},steady,{k},1,{3500 + 10 * k + step},64")
    k = 4
    for step in range(1, 16):
        g += 1
        phase = "steady" if step < 6 else "load" if step < 11 else "recovery"
        ok = 0 if step == 8 else 1
        lat = 0 if not ok else 3400 + (900 if phase == "load" else 0) + step
        lines.append(f"{g},{step},adaptive,{phase},{k},{ok},{lat},{64 if ok else 0}")
        k = min(8, k + 1)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_report_of_an_original_csv(tmp_path: Path) -> None:
    data = load_report(original_csv(tmp_path / "results_phase0.csv"))
    modes = [m["mode"] for m in data.summary["modes"]]
    assert modes == ["fixed_1", "fixed_4", "fixed_8", "adaptive"]
    # HaloSpec never proved k reached the server: its CSV has no draft counters, so no mode
    # can be recommended, and the summary says why
    assert data.summary["winner"] is None
    assert "draft length not proven" in data.summary["recommendation"]["reason"]
    s = data.series["adaptive"]
    assert s.phases.count("load") == 5 and s.latency.count(None) == 1


async def test_report_app_shows_table_and_plots(tmp_path: Path) -> None:
    app = ReportApp(load_report(original_csv(tmp_path / "results_phase0.csv")))
    async with app.run_test(size=(100, 40)) as pilot:
        assert isinstance(app.screen, SummaryScreen)
        assert app.screen.query_one(ModesTable).row_count == 4
        await wait_until(
            pilot, lambda: all("┌" in str(v.content) for v in app.screen.query(PlotView))
        )
        assert len(app.screen.query(PlotView)) == 5
        await pilot.press("q")
    assert app.return_code == 0


def test_run_report_rejects_a_missing_path(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run_report(tmp_path / "nope") == 2
    assert "nope" in capsys.readouterr().err
