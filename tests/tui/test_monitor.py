"""The monitor driven by keys, as a user drives it (App.run_test + Pilot).

Most tests run the real embedded engine (a child process answering over HTTP) through a
Session with a tiny profile: a few steps, no cooldown, short replies. Tests that check only
UI plumbing (exit codes, dialogs) use the in-process ScriptedBackend, which is instant.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import psutil
import pytest
from textual.widgets import Input

from halospec_tui import profile as P
from halospec_tui.backends.base import BackendUnavailable
from halospec_tui.session import Session
from halospec_tui.tui.app import MonitorApp
from halospec_tui.tui.screens.export import ExportScreen
from halospec_tui.tui.screens.save import SaveProfileScreen
from halospec_tui.tui.screens.summary import SummaryScreen
from halospec_tui.tui.widgets.banner import PhaseBanner
from halospec_tui.tui.widgets.charts import PlotView
from tests.conftest import fast_profile
from tests.tui.scripted import ScriptedBackend, csv_rows, scripted_profile, wait_until

SIZE = (100, 32)


def embedded(steps: int = 40, **run: object) -> P.Profile:
    """One fixed mode on the embedded engine, long enough to press keys in (the cooldown
    keeps 40 steps over 4 s however fast the engine is)."""
    run = {"cooldown_s": 0.1, **run}
    p = fast_profile(modes=["fixed_1"], steps_fixed=steps, warmup=1, **run)
    p.request.max_tokens = 12
    return p


def children() -> list[psutil.Process]:
    """Live (non-zombie) descendants; one that is reaped while we look counts as gone."""
    live = []
    for c in psutil.Process().children(recursive=True):
        try:
            if c.status() != psutil.STATUS_ZOMBIE:
                live.append(c)
        except psutil.NoSuchProcess:
            pass
    return live


async def quit_and_wait(app: MonitorApp, pilot, key: str = "q") -> int:  # type: ignore[no-untyped-def]
    await pilot.press(key)
    await wait_until(pilot, lambda: app.return_code is not None, timeout=15)
    assert app._exception is None, app._exception
    return int(app.return_code or 0)


async def test_load_key_gives_load_rows_and_load_banner(tmp_path: Path) -> None:
    session = Session.create(embedded(), tmp_path / "run")
    app = MonitorApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.state.steps_done >= 2)
        await pilot.press("l")
        await wait_until(pilot, lambda: app.state.load_on)
        banner = app.main_screen.query_one(PhaseBanner)
        await wait_until(pilot, lambda: banner.has_class("-load"))
        assert "LOAD" in str(banner.render())
        await wait_until(pilot, lambda: any(r.phase == "load" for r in csv_rows(session.run_dir)))
        await pilot.press("l")
        await wait_until(
            pilot, lambda: any(r.phase == "recovery" for r in csv_rows(session.run_dir))
        )
        await wait_until(pilot, lambda: not banner.has_class("-load"))
        assert await quit_and_wait(app, pilot) == 0
    phases = [r.phase for r in csv_rows(session.run_dir)]
    assert phases[0] == "steady" and "load" in phases and phases[-1] == "recovery"


async def test_pause_stops_new_steps_until_pressed_again(tmp_path: Path) -> None:
    session = Session.create(embedded(), tmp_path / "run")
    app = MonitorApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.state.steps_done >= 1)
        await pilot.press("p")
        banner = app.main_screen.query_one(PhaseBanner)
        await wait_until(pilot, lambda: banner.has_class("-paused"))
        await pilot.pause(1.0)  # the step in flight may still finish
        held = len(csv_rows(session.run_dir))
        await pilot.pause(1.5)
        assert len(csv_rows(session.run_dir)) == held
        await pilot.press("p")
        await wait_until(pilot, lambda: len(csv_rows(session.run_dir)) > held)
        assert not banner.has_class("-paused")
        assert await quit_and_wait(app, pilot) == 0


async def test_quit_stops_children_and_leaves_a_complete_csv(tmp_path: Path) -> None:
    session = Session.create(embedded(), tmp_path / "run")
    app = MonitorApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.state.steps_done >= 2)
        await pilot.press("l")  # burners running too when q comes
        await wait_until(pilot, lambda: app.state.load_on)
        assert children(), "the embedded engine and a burner should be running"
        t0 = time.monotonic()
        assert await quit_and_wait(app, pilot) == 0
        assert time.monotonic() - t0 < 8
    deadline = time.monotonic() + 5
    while children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert children() == []
    text = (session.run_dir / "results.csv").read_text()
    assert text.endswith("\n")
    rows = csv_rows(session.run_dir)
    assert len(rows) == session.writer.rows_written >= 2
    assert [r.global_step for r in rows] == list(range(1, len(rows) + 1))


async def test_save_writes_a_profile_that_loads_back_equal(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    prof = embedded()
    prof.load.duration_s = 12.5  # something not default, to see it come back
    session = Session.create(prof, tmp_path / "run")
    app = MonitorApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.state.steps_done >= 1)
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, SaveProfileScreen))
        app.screen.query_one(Input).value = "mine"
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, SaveProfileScreen))
        assert await quit_and_wait(app, pilot) == 0
    path = tmp_path / "profiles" / "mine.toml"
    loaded = P.load(path)
    assert loaded == dataclasses.replace(session.profile, name="mine")
    assert loaded.run == session.profile.run and loaded.load.duration_s == 12.5


async def test_export_mid_run_writes_the_rows_so_far(tmp_path: Path) -> None:
    # long enough that the run is still going when the export lands, however fast the machine
    session = Session.create(embedded(steps=5000, cooldown_s=0.01), tmp_path / "run")
    app = MonitorApp(session)
    dest = tmp_path / "exported"
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.state.steps_done >= 3)
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen))
        app.screen.query_one(Input).value = str(dest)
        await pilot.press("enter")
        await wait_until(pilot, lambda: (dest / "summary.json").exists())
        exported = csv_rows(dest)
        assert not app.state.done
        assert await quit_and_wait(app, pilot) == 0
    final = csv_rows(session.run_dir)
    assert 3 <= len(exported) < len(final)
    assert exported == final[: len(exported)]


async def test_run_to_the_end_shows_the_summary_with_plots(tmp_path: Path) -> None:
    session = Session.create(
        scripted_profile(), tmp_path / "run", backend=ScriptedBackend(delay_s=0.002)
    )
    app = MonitorApp(session)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen))
        await wait_until(pilot, lambda: len(app.screen.query(PlotView)) == 5)
        views = list(app.screen.query(PlotView))
        await wait_until(pilot, lambda: all("┌" in str(v.content) for v in views))
        assert app.state.done and not app.state.cancelled
        await pilot.press("m")
        await wait_until(pilot, lambda: not isinstance(app.screen, SummaryScreen))
        assert await quit_and_wait(app, pilot) == 0
    assert session.backend.closed


@pytest.mark.parametrize(("key", "code"), [("q", 0), ("ctrl+c", 130)])
async def test_stop_keys_exit_codes(tmp_path: Path, key: str, code: int) -> None:
    backend = ScriptedBackend(delay_s=0.01)
    session = Session.create(scripted_profile(steps_fixed=1000), tmp_path / "run", backend=backend)
    app = MonitorApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.state.steps_done >= 1)
        assert await quit_and_wait(app, pilot, key) == code
    assert backend.closed and session.runner.cancelled


async def test_backend_unavailable_exits_3(tmp_path: Path) -> None:
    class Down(ScriptedBackend):
        def start(self) -> None:
            raise BackendUnavailable("http://127.0.0.1:9", "connection refused")

    session = Session.create(scripted_profile(), tmp_path / "run", backend=Down())
    app = MonitorApp(session)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.return_code is not None, timeout=10)
    assert app.return_code == 3
    assert csv_rows(session.run_dir) == []


async def test_small_terminal_and_no_color(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NO_COLOR", "1")
    session = Session.create(
        scripted_profile(), tmp_path / "run", backend=ScriptedBackend(delay_s=0.002)
    )
    app = MonitorApp(session)
    assert app.no_color
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen))
        await pilot.pause(0.3)
        for view in app.screen.query(PlotView):
            assert not getattr(view.content, "spans", None)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, SummaryScreen))
        assert await quit_and_wait(app, pilot) == 0


async def test_discover_key_lists_a_real_server_and_writes_its_profile(tmp_path: Path) -> None:
    """`d` probes real HTTP servers on loopback (an embedded engine standing in for
    llama-server, plus a dead port) while the sweep runs, and Enter writes a profile for the
    highlighted server that loads and points at it."""
    from textual.widgets import OptionList

    from halospec_tui.backends.embedded import EmbeddedServer
    from halospec_tui.tui.screens.discover import DiscoverScreen

    backend = ScriptedBackend(delay_s=0.01)
    session = Session.create(scripted_profile(steps_fixed=1000), tmp_path / "run", backend=backend)
    with EmbeddedServer(seed=1) as srv:
        url = srv.url
        app = MonitorApp(
            session,
            profiles_dir=tmp_path / "profiles",
            discover_addresses=[url, "http://127.0.0.1:9"],
        )
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: app.state.steps_done >= 1)
            await pilot.press("d")
            await wait_until(pilot, lambda: isinstance(app.screen, DiscoverScreen))
            steps = app.state.steps_done
            options = app.screen.query_one(OptionList)
            await wait_until(pilot, lambda: options.option_count == 1)
            assert url in str(options.get_option_at_index(0).prompt)
            # the sweep goes on while the dialog is open
            await wait_until(pilot, lambda: app.state.steps_done > steps)
            await pilot.press("enter")
            await wait_until(pilot, lambda: not isinstance(app.screen, DiscoverScreen))
            assert await quit_and_wait(app, pilot) == 0
    written = list((tmp_path / "profiles").glob("discovered-*.toml"))
    assert len(written) == 1
    prof = P.load(written[0])
    assert prof.backend.url == url and prof.backend.kind in ("llamacpp", "lemonade")


async def test_command_palette_offers_discover(tmp_path: Path) -> None:
    session = Session.create(scripted_profile(), tmp_path / "run", backend=ScriptedBackend())
    app = MonitorApp(session, autostart=False)
    async with app.run_test(size=SIZE):
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Discover servers" in titles
