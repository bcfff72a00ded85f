"""The live monitor and the report viewer.

Threads: the sweep runs in a Textual thread worker (`MonitorApp._sweep`); the event bus calls
the `EventPump` on its delivery thread; the pump posts one `EventsBatch` message a few times a
second; the UI thread folds the batch into `MonitorState` and redraws the panes that changed.
Nothing on the UI thread waits for the runner, and the runner never waits for the UI.

Exit statuses of `run_monitor` (halospec_tui/exitcodes.py): OK (run ended, or q), INTERRUPTED
(Ctrl+C or SIGINT), TERMINATED (SIGTERM), SERVER (backend unavailable), INPUT (bad profile or
--out), ERROR (the run stopped on an error).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from halospec_tui.backends.base import BackendUnavailable
from halospec_tui.core.events import Event
from halospec_tui.core.results import ResultsFileError, export
from halospec_tui.exitcodes import ExitCode
from halospec_tui.procs import children
from halospec_tui.profile import Profile, ProfileError
from halospec_tui.session import Session
from halospec_tui.textfile import one_line
from halospec_tui.tui.messages import (
    BackendFailed,
    EventsBatch,
    Exported,
    ReportData,
    ReportReady,
    RunEnded,
)
from halospec_tui.tui.pump import EventPump
from halospec_tui.tui.report import load_report
from halospec_tui.tui.screens.compare import CompareScreen
from halospec_tui.tui.screens.discover import DiscoverScreen
from halospec_tui.tui.screens.export import ExportScreen
from halospec_tui.tui.screens.help import HelpScreen
from halospec_tui.tui.screens.main import MainScreen
from halospec_tui.tui.screens.save import SaveProfileScreen
from halospec_tui.tui.screens.summary import SummaryScreen
from halospec_tui.tui.state import MonitorState
from halospec_tui.tui.widgets.banner import PhaseBanner

STOP_WAIT_S = 5.0  # how long q / Ctrl+C wait for the step in flight
REFRESH_S = 0.5  # batched redraws twice a second (pause, load and run end: within 0.1 s)
TICK_S = 1.0  # clocks that move without events (load time, elapsed, time left)

_LIVE_ACTIONS = {"toggle_load", "toggle_pause", "until_decided"}
DIALOGS = (DiscoverScreen, SaveProfileScreen, ExportScreen, HelpScreen)
DIALOGS_NAMES = {
    DiscoverScreen: "Discover",
    SaveProfileScreen: "Save profile",
    ExportScreen: "Export",
    HelpScreen: "Help",
}


class MonitorApp(App[None]):
    """Runs one Session's sweep and shows it. `session=None` shows events fed by `feed()`."""

    CSS_PATH = "app.tcss"
    TITLE = "HaloSpec monitor"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("l", "toggle_load", "Load"),
        Binding("p", "toggle_pause", "Pause"),
        Binding("u", "until_decided", "Until decided"),
        Binding("f", "focus_next", "Charts: next mode", show=False),
        Binding("s", "save_profile", "Save profile"),
        Binding("e", "export", "Export"),
        Binding("d", "discover", "Discover"),
        Binding("v", "show_summary", "Summary"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit_run", "Quit"),
        Binding("ctrl+c", "interrupt", "Stop", show=False, priority=True),
    ]

    def __init__(
        self,
        session: Any = None,
        *,
        clock: Callable[[], float] = time.time,
        event_times: bool = True,
        refresh_interval: float = REFRESH_S,
        tick_interval: float = TICK_S,
        profiles_dir: Path = Path("profiles"),
        autostart: bool = True,
        show_summary: bool = True,
        discover_addresses: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.session = session
        self.discover_addresses = list(discover_addresses) if discover_addresses else None
        self.state = MonitorState(clock, event_times=event_times)
        self.profiles_dir = profiles_dir
        self.autostart = autostart
        self.show_summary = show_summary
        self._tick_interval = tick_interval
        self.pump = EventPump(self._post_events, interval=refresh_interval)
        self._sweep_started = False
        self._sweep_done = threading.Event()
        self.sweep_thread: threading.Thread | None = None
        self._stopping = False
        self.run_error = ""
        self.report: ReportData | None = None
        if session is not None:
            s, b = self.state, session.backend
            s.profile = session.profile.name
            s.backend = b.kind or session.profile.backend.kind
            s.draft_channel = b.draft_channel
            s.model = b.model or session.profile.request.model
            s.run_dir = str(session.run_dir)
            s.modes = tuple(session.profile.run.modes)
            s.total_steps = session.profile.total_steps()
            s.warmup_per_mode = session.profile.run.warmup

    # --- screens --------------------------------------------------------------------------
    def get_default_screen(self) -> Screen[Any]:
        targets = None
        if self.session is not None:
            a = self.session.profile.controller.acceptance
            targets = {"up": a.up, "up_big": a.up_big, "down": a.down, "down_big": a.down_big}
        return MainScreen(targets)

    @property
    def main_screen(self) -> MainScreen:
        return self.query_one_screen()

    def query_one_screen(self) -> MainScreen:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        raise LookupError("no main screen")

    def on_mount(self) -> None:
        self.set_interval(self._tick_interval, self._tick)
        if self.session is not None and self.autostart:
            self.start_sweep()

    def start_sweep(self) -> None:
        if self._sweep_started or self.session is None:
            return
        self._sweep_started = True
        self.session.bus.subscribe(self.pump)
        self.pump.start()
        self._sweep()

    # --- events in ------------------------------------------------------------------------
    def _post_events(self, batch: list[Event]) -> None:
        self.post_message(EventsBatch(batch))

    def feed(self, events: list[Event]) -> None:
        """Apply events at once (tests and replays; the live path goes through the pump)."""
        self.on_events_batch(EventsBatch(list(events)))

    def on_events_batch(self, message: EventsBatch) -> None:
        was_done = self.state.done
        self.state.apply_all(message.events)
        self._redraw()
        if self.state.done != was_done:
            self.refresh_bindings()

    def _redraw(self) -> None:
        with contextlib.suppress(LookupError):
            self.main_screen.refresh_panes(self.state)

    def _tick(self) -> None:
        with contextlib.suppress(LookupError):
            self.main_screen.tick(self.state)

    # --- the sweep thread -----------------------------------------------------------------
    @work(thread=True, exclusive=True, group="sweep", exit_on_error=False)
    def _sweep(self) -> None:
        self.sweep_thread = threading.current_thread()
        summary: dict[str, Any] | None = None
        error = ""
        try:
            try:
                self.session.start_backend()
            except BackendUnavailable as e:
                if not self._stopping:
                    self.post_message(BackendFailed(str(e)))
                return
            summary = self.session.run()
        except Exception as e:  # the runner reported it as a Notice/RunFinished already
            error = f"{e.__class__.__name__}: {e}"
        finally:
            self._sweep_done.set()
        self.post_message(RunEnded(summary, error))

    def on_backend_failed(self, message: BackendFailed) -> None:
        self.run_error = message.error
        self._close_and_exit(ExitCode.SERVER, f"halospec-tui: backend unavailable: {message.error}")

    def on_run_ended(self, message: RunEnded) -> None:
        self.run_error = message.error
        if self._stopping:
            return
        self._finish_run(message.summary)

    @work(thread=True, group="finish", exit_on_error=False)
    def _finish_run(self, summary: dict[str, Any] | None) -> None:
        """Stop burners and servers, flush files, read the run back for the summary."""
        s = self.session
        s.close()
        self.pump.stop()
        if not self.show_summary:
            return
        if summary is None:
            with contextlib.suppress(Exception):
                summary = s.final_summary()
        try:
            data = load_report(s.run_dir, summary=summary, live=True)
        except Exception as e:
            self.post_message(Exported(None, f"cannot read the run back: {e}"))
            return
        self.post_message(ReportReady(data))

    async def on_report_ready(self, message: ReportReady) -> None:
        self.report = message.data
        if self._stopping:
            return
        closed = await self._close_dialogs()
        self.push_screen(SummaryScreen(message.data))
        self.refresh_bindings()
        with contextlib.suppress(LookupError):
            self.main_screen.query_one(PhaseBanner).show(self.state)  # "v shows the summary"
        if closed:
            self.notify(
                f"the run ended: closed the {', '.join(closed)} dialog (its key opens it again)",
                title="run ended",
            )

    async def _close_dialogs(self) -> list[str]:
        """Dialogs opened during the run would go stale under the summary: close them."""
        closed = []
        while isinstance(self.screen, DIALOGS):
            closed.append(DIALOGS_NAMES.get(type(self.screen), "open"))
            await self.pop_screen()
        return closed

    async def action_show_summary(self) -> None:
        """Back to the summary from the monitor, once the run has ended."""
        if self.report is None or isinstance(self.screen, SummaryScreen):
            return
        await self._close_dialogs()
        self.push_screen(SummaryScreen(self.report))

    # --- keys -----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in _LIVE_ACTIONS:
            return self.session is not None and not self.state.done and not self._stopping
        if action == "save_profile":
            return self.session is not None
        if action == "export":
            return self.session is not None and not self._stopping
        if action == "show_summary":
            return self.report is not None and not isinstance(self.screen, SummaryScreen)
        return True

    def action_toggle_load(self) -> None:
        if self.session is None or self.state.done:
            return
        self._toggle_load()

    @work(thread=True, group="load", exit_on_error=False)
    def _toggle_load(self) -> None:
        """Starting or stopping burner processes takes a moment: not on the UI thread."""
        self.session.runner.toggle_load()

    def action_until_decided(self) -> None:
        """Go on past the planned rounds until the recommendation is decided."""
        if self.session is None or self.state.done:
            return
        if self.session.runner.decide():
            self.state.until = "decided"
            self.state.dirty.update(("banner", "progress"))
            self._redraw()

    def action_focus_next(self) -> None:
        """The charts and the controller pane show the next mode."""
        self.state.cycle_focus()
        self._redraw()

    def action_toggle_pause(self) -> None:
        if self.session is None or self.state.done:
            return
        self.state.paused = self.session.runner.toggle_pause()
        self.state.dirty.add("banner")
        self._redraw()

    def action_save_profile(self) -> None:
        if self.session is None:
            return

        def saved(path: Path | None) -> None:
            if path is not None:
                self.notify(f"profile saved to {path}; run it with --profile {path}", title="saved")

        self.push_screen(SaveProfileScreen(self.session.profile, self.profiles_dir), saved)

    def action_export(self) -> None:
        if self.session is None:
            return

        def chosen(dest: Path | None) -> None:
            if dest is not None:
                self._export(dest)

        self.push_screen(ExportScreen(self.session.run_dir), chosen)

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self, dest: Path) -> None:
        try:
            paths = export(self.session.run_dir, dest, self.session.profile)
        except Exception as e:
            self.post_message(Exported(None, f"{e.__class__.__name__}: {e}"))
            return
        self.post_message(Exported(paths))

    def on_exported(self, message: Exported) -> None:
        if message.paths is None:
            self.notify(message.error, title="export failed", severity="error")
        else:
            csv_path, json_path = message.paths
            self.notify(f"{csv_path}\n{json_path}", title="exported")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_discover(self) -> None:
        """Probe the usual local addresses; write a profile for the server the user picks."""
        if isinstance(self.screen, DiscoverScreen):
            return

        def written(path: Path | None) -> None:
            if path is not None:
                self.notify(
                    f"profile written to {path}; run it with halospec-tui --profile {path}",
                    title="discovered",
                )

        self.push_screen(
            DiscoverScreen(self.profiles_dir, addresses=self.discover_addresses), written
        )

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "Discover servers",
            "Probe local inference servers (Lemonade, llama-server, vLLM, LM Studio) and "
            "write a profile for one",
            self.action_discover,
        )

    def action_quit_run(self) -> None:
        self.stop_run(ExitCode.ERROR if self.run_error else ExitCode.OK)

    def action_interrupt(self) -> None:
        self.stop_run(ExitCode.INTERRUPTED)

    def stop_run(self, code: int) -> None:
        """Cancel the sweep, wait up to 5 s for it, stop everything, exit with `code`."""
        if self._stopping:
            return
        self._stopping = True
        self.state.stopping = True
        self.state.dirty.add("banner")
        self._redraw()
        self.refresh_bindings()
        if self.session is not None:
            self.session.runner.cancel()
        self._close_and_exit(code)

    def _close_and_exit(self, code: int, message: str | None = None) -> None:
        self._stopping = True
        self._stop_worker(code, message)

    @work(thread=True, group="shutdown", exit_on_error=False)
    def _stop_worker(self, code: int, message: str | None) -> None:
        if self._sweep_started:
            self._sweep_done.wait(STOP_WAIT_S)
        if self.session is not None:
            self.session.close()
        self.pump.stop()
        self.call_from_thread(self.exit, None, code, message)

    def on_unmount(self) -> None:
        # any other way out (a test ending, an exception) still stops the run and its children
        if self.session is not None:
            self.session.runner.cancel()
            self.session.close()
        self.pump.stop()


class ReportApp(App[None]):
    """`halospec-tui report PATH`: the summary screen of a finished run or CSV."""

    CSS_PATH = "app.tcss"
    TITLE = "HaloSpec report"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, data: ReportData) -> None:
        super().__init__()
        self.data = data

    def get_default_screen(self) -> Screen[Any]:
        return SummaryScreen(self.data)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


# --- entry points for the CLI ---------------------------------------------------------------


def _err(text: str) -> None:
    print(f"halospec-tui: {one_line(text)}", file=sys.stderr)


def run_monitor(profile: Profile, out: str | None = None, *, backend: Any = None) -> int:
    """Open the monitor on a new run of `profile`; returns the process exit status."""
    try:
        session = Session.create(profile, out, backend=backend)
    except ProfileError as e:
        _err(str(e))
        return ExitCode.INPUT
    app = MonitorApp(session)
    loop = asyncio.new_event_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, app.stop_run, ExitCode.TERMINATED)
        loop.add_signal_handler(signal.SIGINT, app.stop_run, ExitCode.INTERRUPTED)
    try:
        app.run(loop=loop)
    finally:
        session.close()
        _close_loop(loop)
    code = app.return_code if app.return_code is not None else ExitCode.OK
    t = app.sweep_thread
    if t is not None and t.is_alive():
        t.join(2.0)
    if t is not None and t.is_alive():
        # a request that ignores cancellation: the files are closed and every child stopped,
        # so leave now rather than wait for its timeout at interpreter exit
        _err("the step in flight did not end; leaving it behind (files are complete)")
        children.stop_all()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio.run's cleanup, except that it does not wait for executor threads (the sweep
    worker is one): a request stuck past the 5 s stop limit must not hold the exit."""
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def run_report(path: Path, *, run: int | None = None) -> int:
    """Open the summary screen for a run folder or a results CSV (ours or HaloSpec's); `run`
    picks one of the runs a CSV holds (core.results.read_run)."""
    try:
        data = load_report(path, run=run)
    except (ResultsFileError, ProfileError) as e:
        _err(str(e))
        return ExitCode.INPUT
    app = ReportApp(data)
    app.run()
    return app.return_code if app.return_code is not None else ExitCode.OK


class CompareApp(App[None]):
    """`halospec-tui report A B ...`: runs compared (tui/screens/compare.py)."""

    TITLE = "HaloSpec compare"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, cmp: dict[str, Any]) -> None:
        super().__init__()
        self.cmp = cmp

    def get_default_screen(self) -> Screen[Any]:
        return CompareScreen(self.cmp)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


def run_compare(cmp: dict[str, Any]) -> int:
    """Open the comparison of runs (core/compare.compare_runs' dict)."""
    app = CompareApp(cmp)
    app.run()
    return app.return_code if app.return_code is not None else ExitCode.OK
