"""The live monitor screen: every pane of the running sweep."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer

from halospec_tui.tui.state import PANES, MonitorState
from halospec_tui.tui.widgets.banner import PhaseBanner
from halospec_tui.tui.widgets.charts import ModeCharts
from halospec_tui.tui.widgets.controller import ControllerPane
from halospec_tui.tui.widgets.event_log import EventLog
from halospec_tui.tui.widgets.header import RunHeader
from halospec_tui.tui.widgets.modes_table import ModesTable
from halospec_tui.tui.widgets.progress import RunProgress

WIDE = 140  # columns from which the modes table and the log sit side by side
TALL = 40  # rows from which the sparklines get two rows each
ABOVE = 2 + 1 + 2 + 1  # header, banner, progress, footer: the rows not in #live or #bottom
LOG_MIN = 3  # the events pane's least height (its title and two entries)


class MainScreen(Screen[None]):
    def __init__(self, acceptance_targets: dict[str, float] | None = None) -> None:
        super().__init__(id="main")
        self._targets = acceptance_targets
        self._rows_sized = -1
        self._rows_shown = 0

    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        yield PhaseBanner(id="banner")
        yield RunProgress(id="progress")
        with Horizontal(id="live"):
            yield ModeCharts(id="charts")
            yield ControllerPane(self._targets, id="controller")
        with Vertical(id="bottom"):
            table = ModesTable(id="modes")
            table.border_title = "modes"
            yield table
            log = EventLog(id="log")
            log.border_title = "events"
            yield log
        yield Footer()

    def on_mount(self) -> None:
        state = getattr(self.app, "state", None)
        if state is not None:
            state.dirty.update(("header", "banner", "progress", "charts", "controller", "modes"))
            self.refresh_panes(state)

    def on_resize(self) -> None:
        self.set_class(self.size.width >= WIDE, "-wide")
        self.set_class(self.size.height >= TALL, "-tall")
        self._size_bottom()

    def _size_bottom(self) -> None:
        """Stacked (under WIDE columns), the modes table takes the rows its modes need and the
        events pane the rest, down to LOG_MIN; a table taller than that scrolls (to the
        recommended row). Side by side both take the full height."""
        table = self.query_one(ModesTable)
        live = 9 if self.size.height >= TALL else 6
        room = self.size.height - ABOVE - live
        n = max(self._mode_count(), 1)
        if self.size.width >= WIDE:
            table.styles.height = "1fr"
            height = room
        else:
            height = max(3, min(n + 2, room - LOG_MIN))
            table.styles.height = height
        self._rows_shown = height - 2  # less the border and the header row
        self._title_modes()

    def _title_modes(self) -> None:
        """ "modes · ★ leading", and when not every row fits, that the table scrolls."""
        state = getattr(self.app, "state", None)
        table = self.query_one(ModesTable)
        title = "modes"
        if state is not None and state.winner:
            title += " · ★ recommended" if state.done else " · ★ leading"
        n = self._rows_sized
        if 0 < self._rows_shown < n:
            title += f" · {self._rows_shown} of {n} rows shown, the table scrolls"
        table.border_title = title

    def _mode_count(self) -> int:
        """The planned modes (a stable height from the start), else the rows there are."""
        state = getattr(self.app, "state", None)
        if state is None:
            return 0
        return max(len(state.modes), self._rows_sized)

    def refresh_panes(self, s: MonitorState) -> None:
        """Redraw the panes whose data changed since the last call. A pane whose widgets are
        not composed yet (an instant backend's first batch can beat them) stays dirty for the
        next redraw instead of raising."""
        dirty, s.dirty = s.dirty, set()
        for pane in PANES:
            if pane in dirty:
                try:
                    self._draw(pane, s)
                except NoMatches:
                    s.dirty.add(pane)

    def _draw(self, pane: str, s: MonitorState) -> None:
        if pane == "header":
            self.query_one(RunHeader).show(s)
        elif pane == "banner":
            self.query_one(PhaseBanner).show(s)
        elif pane == "progress":
            self.query_one(RunProgress).show(s)
        elif pane == "charts":
            self.query_one(ModeCharts).show(s)
        elif pane == "controller":
            self.query_one(ControllerPane).show(s)
        elif pane == "modes":
            rows = s.mode_rows()
            if len(rows) != self._rows_sized:
                self._rows_sized = len(rows)
                self._size_bottom()
            self.query_one(ModesTable).show_modes(rows, s.winner, s.modes_version)
            self._title_modes()
        elif pane == "log":
            entries, dropped = s.take_log()
            if entries or dropped:
                self.query_one(EventLog).add_entries(entries, dropped)

    def tick(self, s: MonitorState) -> None:
        """Once a second: clocks that move without events (load time, elapsed, time left)."""
        if s.load_on:
            self.query_one(PhaseBanner).show(s)
        if not s.done and s.started_at is not None:
            self.query_one(RunProgress).show(s)
