"""Moving between the monitor and the summary, and dialogs at the end of a run, driven by keys
(App.run_test + Pilot). The in-process ScriptedBackend stands in for a server: these tests
check screens and keys, not requests (test_monitor.py runs the real engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from halospec_tui.session import Session
from halospec_tui.tui.app import MonitorApp
from halospec_tui.tui.screens.discover import DiscoverScreen
from halospec_tui.tui.screens.export import ExportScreen
from halospec_tui.tui.screens.help import HelpScreen
from halospec_tui.tui.screens.main import MainScreen
from halospec_tui.tui.screens.summary import SummaryScreen
from halospec_tui.tui.widgets.banner import PhaseBanner
from halospec_tui.tui.widgets.modes_table import ModesTable
from tests.tui.scripted import ScriptedBackend, scripted_profile, wait_until

SIZE = (100, 30)
CLOSED = ["http://127.0.0.1:9"]  # the discard port: nothing listens, the probe fails at once


def app_for(tmp_path: Path, **backend: object) -> tuple[MonitorApp, ScriptedBackend]:
    b = ScriptedBackend(**backend)  # type: ignore[arg-type]
    session = Session.create(scripted_profile(), tmp_path / "run", backend=b)
    return MonitorApp(session, discover_addresses=CLOSED, profiles_dir=tmp_path), b


def footer_keys(app: MonitorApp) -> set[str]:
    """The keys the footer shows now (active bindings with show=True)."""
    return {
        b.binding.key for b in app.screen.active_bindings.values() if b.binding.show and b.enabled
    }


async def test_summary_and_monitor_reopen_each_other(tmp_path: Path) -> None:
    app, _ = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen))
        assert "m" in footer_keys(app)  # the footer says how to reach the monitor
        await pilot.press("m")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        banner = str(app.screen.query_one(PhaseBanner).render())
        assert "v shows the summary" in banner and "m shows the monitor" not in banner
        assert "v" in footer_keys(app)
        await pilot.press("v")
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen))
        assert "v" not in footer_keys(app)  # no key for the screen already shown
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.press("v")
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen))
        assert len(app.screen_stack) == 2  # monitor + one summary, never a pile of them
        await pilot.press("q")
        await wait_until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 0


async def test_no_summary_key_while_the_run_goes_on(tmp_path: Path) -> None:
    app, backend = app_for(tmp_path, gate_at=5)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: backend.reached.is_set())
        assert "v" not in footer_keys(app)
        await pilot.press("v")
        await pilot.pause(0.1)
        assert isinstance(app.screen, MainScreen)
        backend.gate.set()
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen))
        await pilot.pause(0.5)


async def test_dialog_open_at_the_run_end_is_closed(tmp_path: Path) -> None:
    app, backend = app_for(tmp_path, gate_at=5)
    notices: list[str] = []
    notify = app.notify

    def record(message: str, **kw: object) -> None:
        """notifications expire after seconds; a loaded machine may look later than that"""
        notices.append(message)
        notify(message, **kw)  # type: ignore[arg-type]

    app.notify = record  # type: ignore[method-assign]
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: backend.reached.is_set())
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, DiscoverScreen))
        backend.gate.set()
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen))
        assert not any(isinstance(s, DiscoverScreen) for s in app.screen_stack)
        assert any("closed the Discover dialog" in n for n in notices), notices
        await pilot.press("m")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))  # not the dialog


async def test_export_dialog_closes_too_and_opens_again(tmp_path: Path) -> None:
    app, backend = app_for(tmp_path, gate_at=5)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: backend.reached.is_set())
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen))
        backend.gate.set()
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen))
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen))
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen))


@pytest.mark.parametrize(
    ("key", "dialog"), [("d", DiscoverScreen), ("question_mark", HelpScreen)], ids=["d", "help"]
)
async def test_q_in_a_dialog_without_text_field_quits(tmp_path: Path, key, dialog) -> None:  # type: ignore[no-untyped-def]
    """A modal screen hides the app's keys; q must still stop the run and quit (status 0)."""
    app, backend = app_for(tmp_path, gate_at=5)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: backend.reached.is_set())
        await pilot.press(key)
        await wait_until(pilot, lambda: isinstance(app.screen, dialog))
        await pilot.pause(0.2)
        await pilot.press("q")
        await wait_until(pilot, lambda: app.return_code is not None, timeout=15)
    assert app.return_code == 0


async def test_nine_modes_at_80x24_keep_the_keys_and_say_the_table_scrolls(tmp_path: Path) -> None:
    modes = [f"fixed_{k}" for k in range(1, 9)] + ["adaptive:model"]
    session = Session.create(
        scripted_profile(modes=modes), tmp_path / "run", backend=ScriptedBackend()
    )
    app = MonitorApp(session, profiles_dir=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen))
        await pilot.press("m")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.pause(0.2)
        banner = str(app.screen.query_one(PhaseBanner).render())
        assert "v summary" in banner and banner.rstrip().endswith("q quits"), banner
        table = app.screen.query_one(ModesTable)
        assert "7 of 9 rows shown, the table scrolls" in str(table.border_title)
        names = [str(table.get_row_at(i)[0].plain).strip("★ ") for i in range(table.row_count)]
        assert names[-1] == "ad:model"  # shortened: that keeps a column at 80
        winner = [k.value for k in table.rows].index(app.state.winner)
        assert table.scroll_y <= winner < table.scroll_y + 7
