"""Layouts that fit: tables keep columns by priority, names shorten only when needed, the
evaluation reads at any width, the recommended row is on the first screen, banners are never
stale. Pure functions are called directly; screens run in App.run_test at the user's sizes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Static

from halospec_tui.core.evaluation.text import format_evaluation, integer_ticks
from halospec_tui.core.events import LoadChanged
from halospec_tui.core.tables import fit_table, keep_columns, text_table
from halospec_tui.modes import short_name
from halospec_tui.session import Session
from halospec_tui.tui.app import ReportApp
from halospec_tui.tui.report import load_report
from halospec_tui.tui.screens.summary import SummaryScreen
from halospec_tui.tui.state import MonitorState
from halospec_tui.tui.widgets.banner import fit_parts
from halospec_tui.tui.widgets.charts import render_plot
from halospec_tui.tui.widgets.modes_table import COLUMNS, ModesTable
from tests.tui.scripted import ScriptedBackend, scripted_profile, wait_until

SIZES = [(80, 24), (100, 30), (120, 40), (200, 60)]


# --- tables ---------------------------------------------------------------------------------


def test_keep_columns_by_priority_in_display_order() -> None:
    # widths 10, 10, 10, 10; priorities: the last column matters most after the first
    kept = keep_columns([10, 10, 10, 10], [0, 3, 2, 1], 36, gap=2)
    assert kept == (0, 2, 3)  # column 1 (priority 3) dropped, order kept
    assert keep_columns([50, 5], [0, 1], 20) == (0,)  # the first column stays even if too wide


def test_keep_columns_takes_a_narrow_later_column_that_fits() -> None:
    assert keep_columns([10, 30, 4], [0, 1, 2], 20, gap=2) == (0, 2)


def test_names_are_shortened_only_when_that_keeps_a_column() -> None:
    header = ["mode", "a", "b"]
    rows = [["adaptive:model", "1.0", "2.0"], ["fixed_4", "3.0", "4.0"]]
    short = [[short_name(r[0]), *r[1:]] for r in rows]
    wide = fit_table(header, rows, [0, 1, 2], 40, short_rows=short)
    assert wide.columns == (0, 1, 2) and not wide.short_names
    narrow = fit_table(header, rows, [0, 1, 2], 20, short_rows=short)  # 16 + 5 + 5: b lost
    assert narrow.columns == (0, 1, 2) and narrow.short_names  # ad:model: 10 + 5 + 5 keeps b
    assert short_name("adaptive:model") == "ad:model" and short_name("adaptive") == "ad"
    assert short_name("fixed_4") == "fixed_4"


def test_text_table_with_width_never_exceeds_it() -> None:
    header = ["mode", "tok/s", "p95 ms", "/oracle", "/best fixed"]
    rows = [["adaptive:model", "123.4", "456.7", "0.987", "1.002"]]
    for width in (20, 30, 45, 80):
        lines = text_table(header, rows, width=width, priority=[0, 1, 4, 2, 3])
        assert all(len(x) <= width for x in lines[1:]) or len(lines[0].split()) == 1
        assert lines[0].startswith("mode")
    assert "/oracle" in text_table(header, rows, width=45, priority=[0, 1, 4, 2, 3])[0]
    assert "p95 ms" not in text_table(header, rows, width=45, priority=[0, 1, 4, 2, 3])[0]


# --- the evaluation --------------------------------------------------------------------------


def _seg(name, phase, first, last, modes, oracle=None):  # type: ignore[no-untyped-def]
    return {
        "name": name,
        "load_phase": phase,
        "first_step": first,
        "last_step": last,
        "settled_from_step": first,
        "oracle": oracle,
        "modes": modes,
    }


def _stats(steps: int, tps: float | None = None, ratio: float | None = None) -> dict:
    none = tps is None
    return {
        "steps": steps,
        "tokens_per_s": tps,
        "tokens_per_s_settled": tps,
        "p50_ms": None if none else 100.0,
        "p95_ms": None if none else 120.0,
        "k_settled_mean": None if none else 4.0,
        "ratio_oracle": ratio,
        "ratio_best_fixed": ratio,
    }


def evaluation(first_load: int = 6) -> dict:
    fixed = {f"fixed_{k}": _stats(0) for k in range(1, 9)}
    return {
        "segments": [
            _seg(
                "all",
                None,
                1,
                5,
                {**{f"fixed_{k}": _stats(5, 100.0 + k, 0.9) for k in range(1, 9)}}
                | {"adaptive:model": _stats(5, 99.0, 0.88)},
                {"mode": "fixed_8", "k": 8, "tokens_per_s": 108.0},
            ),
            _seg("load", "load", first_load, 11, fixed | {"adaptive:model": _stats(6, 50.0)}),
            _seg("recovery", "recovery", 12, 40, fixed | {"adaptive:model": _stats(29, 90.0)}),
        ],
        "overall": {
            "best_fixed": {"mode": "fixed_8", "k": 8, "tokens_per_s": 108.0},
            "oracle_schedule": {"tokens_per_s": 108.0, "ks": {"all": 8}},
            "oracle_gain": 0.0,
            "modes": {
                "adaptive:model": {"tokens_per_s": 80.0, "ratio_best_fixed": 0.74},
                "fixed_8": {"tokens_per_s": 108.0, "ratio_best_fixed": 1.0},
            },
        },
        "adaptive_modes": ["adaptive:model"],
    }


def test_evaluation_lists_only_modes_that_ran_and_no_dash_rows() -> None:
    text = format_evaluation(evaluation())
    load = text.split("segment load")[1].split("segment recovery")[0]
    assert "fixed_" not in load  # the fixed modes never ran under load
    assert "adaptive:model" in load
    assert "no fixed mode ran in it" in load
    for line in text.splitlines():
        cells = line.split()
        assert not (len(cells) > 2 and all(c == "-" for c in cells[1:])), line
        assert "/oracle" not in line or "-" not in cells[-1:], line


def test_evaluation_names_the_no_load_segment_and_flags_unlike_comparisons() -> None:
    text = format_evaluation(evaluation())
    assert "segment no load: steps 1..5" in text and "segment all" not in text
    assert "k no load 8" in text
    assert "not like for like: adaptive:model ran 35 steps under load or in recovery" in text


def test_overlapping_segments_are_not_shown_as_shared_ranges() -> None:
    text = format_evaluation(evaluation(first_load=3))  # load 3..11 overlaps 1..5
    assert "steps 3..11" not in text and "steps 1..5" not in text
    assert "step ranges differ by mode" in text


@pytest.mark.parametrize("width", [60, 76, 96, 116])
def test_evaluation_fits_the_width(width: int) -> None:
    lines = format_evaluation(evaluation(), width=width).splitlines()
    assert max(len(x) for x in lines) <= width
    whole = [x for x in lines if x.startswith("whole run")]
    assert whole and whole[0] != lines[-1]  # wrapped onto the next line, not cut


def test_integer_ticks() -> None:
    assert integer_ticks(1, 8, 8) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert integer_ticks(1, 40, 5) == [1, 11, 21, 31]
    assert integer_ticks(4, 4, 5) == [4]
    assert all(isinstance(t, int) for t in integer_ticks(0.5, 6.5, 4))


def test_k_by_step_chart_has_whole_number_ticks() -> None:
    from halospec_tui.tui.plots import ModeSeries, by_step_plot

    s = ModeSeries("adaptive", list(range(1, 31)), ["steady"] * 30, [100.0] * 30)
    s.k = [1 + (i * 7) % 6 for i in range(30)]
    plot = by_step_plot(s, "k")
    assert plot is not None
    text = render_plot(plot[2], 70, 14, colorless=True).plain
    ticks = re.findall(r"(\S+)┤", text) + re.findall(r"\s(\d+(?:\.\d+)?)\s", text.splitlines()[-1])
    assert ticks and all("." not in t for t in ticks), ticks


# --- banners ---------------------------------------------------------------------------------


def test_fit_parts_drops_the_last_parts_first() -> None:
    parts = ["round 8/12", "leading k = 5 (k = 5 vs k = 2: 100 % sure)", "no load"]
    assert fit_parts(parts, 200) == " · ".join(parts)
    assert fit_parts(parts, 60) == " · ".join(parts[:2])
    assert fit_parts(parts, 5) == "round 8/12"


def test_load_banner_follows_the_load_off_event() -> None:
    now = [100.0]
    s = MonitorState(lambda: now[0], event_times=False)
    s.apply(LoadChanged(on=True, cores=2, scheduled=True, duration_s=4.0))
    assert s.banner_phase() == "load" and s.load_elapsed() == 0.0
    now[0] = 103.0
    assert s.load_elapsed() == 3.0
    s.apply(LoadChanged(on=False, cores=2, scheduled=True, duration_s=4.0))
    assert s.banner_phase() != "load" and s.load_elapsed() is None


# --- screens at each size ----------------------------------------------------------------------


def finished_run() -> Path:
    session = Session.create(scripted_profile(), "run", backend=ScriptedBackend())
    session.start_backend()
    session.run()
    session.close()
    return Path("run")


def _visible(widget) -> bool:  # type: ignore[no-untyped-def]
    r, screen = widget.region, widget.screen.region
    return r.height > 0 and r.y >= 0 and r.bottom <= screen.bottom


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_summary_answer_and_its_row_on_the_first_screen(
    tmp_path: Path, monkeypatch, size
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    app = ReportApp(load_report(finished_run()))
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        assert isinstance(screen, SummaryScreen)
        table = screen.query_one("#summary-modes", ModesTable)
        rec = screen.query_one("#summary-recommendation", Static)
        hint = screen.query_one("#summary-more", Static)

        def settled() -> bool:
            """the table filled and sized, the winner's row in view, the hint written"""
            if (
                table.row_count != 3
                or not table.shown_columns
                or "more below" not in str(hint.content)
            ):
                return False
            winner = next(i for i, k in enumerate(table.rows) if k.value == "fixed_5")
            visible = table.scrollable_content_region.height
            return table.region.bottom <= size[1] - 2 and (
                table.scroll_y <= winner < table.scroll_y + visible
            )

        await wait_until(pilot, settled)  # under load the layout takes a few refreshes
        assert _visible(rec)
        # columns kept by priority; every kept column fits the table's width
        assert table.shown_columns[0] == "mode" and "tok/s" in table.shown_columns
        assert table.virtual_size.width <= table.size.width
        if size[0] >= 100:
            assert table.shown_columns == COLUMNS
        # the evaluation below: as tall as its lines, none wider than its box
        ev = screen.query_one("#summary-evaluation", Static)
        await wait_until(pilot, lambda: ev.size.height > 5)
        lines = str(ev.content).splitlines()
        assert ev.size.height == len(lines)
        assert max(len(x) for x in lines) <= ev.size.width
        await pilot.press("end")
        await wait_until(
            pilot,
            lambda: "end of the summary" in str(screen.query_one("#summary-more", Static).content),
        )


class TableApp(App[None]):
    """Just a modes table filling the screen (the monitor's and the summary's widget)."""

    def compose(self) -> ComposeResult:
        yield ModesTable(id="t")


def _modes() -> list[dict]:
    conf = {"label": "tied", "estimate": {"value": 300.0, "lo": 250.25, "hi": 350.75}}
    base = {"steps": 40, "p95_ms": 123.4, "acceptance": 0.5, "success_rate": 1.0}
    return [
        {"mode": m, "tokens_per_s": 300.0, "confidence": conf, **base}
        for m in ("fixed_4", "adaptive:acceptance", "adaptive:model")
    ]


@pytest.mark.parametrize(("width", "short"), [(120, False), (72, True), (40, True)])
async def test_mode_names_shorten_only_when_that_keeps_a_column(width: int, short: bool) -> None:
    app = TableApp()
    async with app.run_test(size=(width, 10)) as pilot:
        table = app.query_one(ModesTable)
        table.show_modes(_modes(), "adaptive:model")
        await pilot.pause(0.1)
        names = [str(table.get_row_at(i)[0].plain).strip("★ ") for i in range(3)]
        assert names[2] == ("ad:model" if short else "adaptive:model")
        assert table.shown_columns[0] == "mode"
        # what is kept fits: no column is cut at the edge
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= width
        if width == 120:
            assert table.shown_columns == COLUMNS
