"""Runs compared (`halospec-tui report A B ...`): modes side by side, the differences with
their intervals, the recommendations, what differed, and the figure of merit by k per run.

The comparison itself is core/compare.py (one dict); this screen only lays it out, as
core/compare_report.py does for text, Markdown and HTML.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Label, Static

from halospec_tui.core.compare import read_and_compare
from halospec_tui.core.compare_report import (
    chart_draw,
    chart_title,
    diff_start,
    row_verdicts,
    run_lines,
    summary_line,
    table,
    verdict_lines,
)
from halospec_tui.core.results import ResultsFileError
from halospec_tui.tui.widgets.charts import PlotView

DIFF_STYLES = {"better": "bold green", "worse": "bold red", "better?": "green", "worse?": "red"}


def title_text(cmp: dict[str, Any]) -> Text:
    t = Text()
    t.append(" COMPARE ", style="bold reverse")
    t.append(f"  {len(cmp['runs'])} runs, {cmp['metric_label']} per mode, baseline ")
    t.append(cmp["baseline"], style="bold")
    for line in run_lines(cmp):
        label, rest = line.split("  ", 1)
        t.append("\n ")
        t.append(label, style="bold")
        t.append(f"  {rest}", style="")
    return t


def verdicts_text(cmp: dict[str, Any]) -> Text:
    t = Text(no_wrap=False)
    if len(cmp["runs"]) > 1:
        t.append(summary_line(cmp) + "\n", style="bold")
    for i, line in enumerate(verdict_lines(cmp)):
        t.append(("\n" if i else "") + line)
    t.append(f"\n{cmp['method']}", style="dim")
    return t


def conditions_text(cmp: dict[str, Any]) -> Text:
    notes = cmp["conditions"]
    if not notes:
        return Text("same conditions: backend, model, draft channel, settings", style="green")
    t = Text("conditions that differ (a difference may come from these):", style="yellow")
    for n in notes:
        t.append(f"\n  {n}", style="")
    return t


class CompareScreen(Screen[None]):
    """The comparison, scrollable; Esc goes back when it was opened from a summary."""

    BINDINGS = [Binding("escape", "back", "Back")]
    DEFAULT_CSS = """
    #compare-body { height: 1fr; }
    #compare-title, #compare-verdicts, #compare-conditions { padding: 0 1; height: auto; }
    #compare-table { height: auto; max-height: 24; margin: 1 0; }
    #compare-plot-box { height: 20; border: round $panel-lighten-2; }
    #compare-plot { height: 1fr; }
    """

    def __init__(self, cmp: dict[str, Any]) -> None:
        super().__init__(id="compare")
        self.cmp = cmp
        self._compact: bool | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="compare-body"):
            yield Static(title_text(self.cmp), id="compare-title")
            yield DataTable(id="compare-table", zebra_stripes=True, cursor_type="row")
            yield Static(verdicts_text(self.cmp), id="compare-verdicts")
            yield Static(conditions_text(self.cmp), id="compare-conditions")
            draw = chart_draw(self.cmp)
            if draw is not None:
                with Vertical(id="compare-plot-box") as box:
                    box.border_title = chart_title(self.cmp)
                    yield PlotView(draw, id="compare-plot")
        yield Footer()

    def on_mount(self) -> None:
        self._fill(compact=self.size.width < self.full_width())

    def on_resize(self) -> None:
        compact = self.size.width < self.full_width()
        if compact != self._compact:
            self._fill(compact)

    def full_width(self) -> int:
        """Cells the full table needs: its widest cell per column, padding, the scrollbar."""
        header, body = table(self.cmp)
        cols = zip(header, *body, strict=True)
        return sum(max(len(c) for c in col) + 2 for col in cols) + 4

    def _fill(self, compact: bool) -> None:
        """(Re)build the table: full, or compact when the screen is narrower than it."""
        self._compact = compact
        header, body = table(self.cmp, compact=compact)
        dt = self.query_one("#compare-table", DataTable)
        dt.clear(columns=True)
        dt.add_columns(*header)
        first_diff = diff_start(self.cmp, compact=compact)
        for row, verdicts in zip(body, row_verdicts(self.cmp), strict=True):
            cells: list[str | Text] = list(row[:first_diff])
            for i, c in enumerate(row[first_diff:]):
                cells.append(Text(c, style=DIFF_STYLES.get(verdicts[i // 2], "")))
            dt.add_row(*cells)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "back":  # only when it was opened from a summary (c)
            return len(self.app.screen_stack) > 1
        return True

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()


class AddRunScreen(ModalScreen[str | None]):
    """`c` on a summary: the path of another run to compare this one with."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    AddRunScreen { align: center middle; }
    #add-run-dialog { width: 80%; max-width: 100; height: auto; border: round $accent;
                      padding: 1 2; background: $surface; }
    #add-run-hint { color: $text-muted; }
    #add-run-hint.-error { color: $error; }
    """

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def compose(self) -> ComposeResult:
        with Vertical(id="add-run-dialog"):
            yield Label(f"Compare {self.source} (A) with another run (B)")
            yield Input(id="add-run-path", placeholder="run folder or results CSV")
            yield Static("Enter compares, Esc cancels", id="add-run-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            hint = self.query_one("#add-run-hint", Static)
            hint.set_class(True, "-error")
            hint.update("type the path of a run folder or a results CSV")
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)


def compare_with(app: App[object], source: str) -> None:
    """Ask for a run, read both and show the comparison; reading and the bootstrap run in a
    thread worker, an unreadable run is a notification, not a crash."""

    def chosen(path: str | None) -> None:
        if path is None:
            return

        def work() -> None:
            try:
                cmp = read_and_compare([source, path])
            except ResultsFileError as e:
                app.call_from_thread(app.notify, str(e), severity="error", timeout=8)
                return
            app.call_from_thread(app.push_screen, CompareScreen(cmp))

        app.run_worker(work, thread=True, exclusive=True, group="compare")

    app.push_screen(AddRunScreen(source), chosen)
