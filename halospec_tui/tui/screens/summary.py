"""End-of-run summary: the modes table, the draft-control verdicts and the plotext plots."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import HorizontalScroll, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from halospec_tui.core.evaluation.text import format_evaluation
from halospec_tui.core.recommendation import mode_name
from halospec_tui.headless import format_recommendation
from halospec_tui.tui.messages import ReportData
from halospec_tui.tui.plots import all_plots
from halospec_tui.tui.screens.compare import compare_with
from halospec_tui.tui.widgets.charts import PlotView
from halospec_tui.tui.widgets.header import short_path
from halospec_tui.tui.widgets.modes_table import ModesTable

WIDE = 150  # columns from which plots go two per row


def title_text(data: ReportData) -> Text:
    s = data.summary
    t = Text()
    t.append(" SUMMARY ", style="bold reverse")
    t.append(f"  {short_path(data.source)}", style="bold")
    for key in ("profile", "backend", "draft_channel", "model"):
        if s.get(key):
            t.append(f"  {key} ", style="dim")
            t.append(str(s[key]))
    n = sum(int(m.get("steps") or 0) for m in s.get("modes") or [])
    t.append(f"\n {len(s.get('modes') or [])} modes, {n} steps", style="")
    if s.get("cancelled"):
        t.append(" · cancelled before the end", style="yellow")
    if s.get("partial"):
        t.append(" · partial export", style="yellow")
    t.append(" · recommended ", style="dim")
    w = s.get("winner")
    t.append(mode_name(w) if w else "none", style="bold green" if w else "bold yellow")
    if w:
        t.append(f" ({w})", style="dim")
    return t


def recommendation_text(summary: dict[str, Any]) -> Text:
    """The answer: why this k, how sure, what it is tied with, how to apply it."""
    lines = format_recommendation(summary)
    t = Text(no_wrap=False)
    for i, line in enumerate(lines):
        if i:
            t.append("\n")
        t.append(line, style="bold" if i == 0 else "")
    return t


def verdict_text(modes: list[dict[str, Any]]) -> Text | None:
    """Did each mode's draft length reach the server? One line when every mode agrees."""
    found = [
        (m, m["draft_control"])
        for m in modes
        if isinstance(m.get("draft_control"), dict) and m["draft_control"].get("verdict")
    ]
    if not found:
        return None
    styles = {"not_applied": "red", "applied": "green"}
    verdicts = {dc["verdict"] for _, dc in found}
    channels = {dc.get("channel") for _, dc in found}
    notes = [(dc.get("evidence") or {}).get("note", "") for _, dc in found]
    lines = Text()
    if len(verdicts) == 1 and not any(notes):
        v = verdicts.pop()
        lines.append(" draft length ", style="dim")
        lines.append(v.replace("_", " "), style=styles.get(v, "yellow"))
        lines.append(" in every mode", style="dim")
        if len(channels) == 1 and None not in channels:
            lines.append(f" (channel {channels.pop()})", style="dim")
        return lines
    for (m, dc), note in zip(found, notes, strict=True):
        lines.append(f" {m.get('mode')}: ", style="dim")
        lines.append(
            str(dc["verdict"]).replace("_", " "), style=styles.get(dc["verdict"], "yellow")
        )
        if dc.get("channel"):
            lines.append(f" via {dc['channel']}", style="dim")
        if note:
            lines.append(f" · {note}", style="dim")
        lines.append("\n")
    lines.rstrip()
    return lines


def evaluation_text(summary: dict[str, Any]) -> Text | None:
    """The runner's per-segment evaluation (runs with an adaptive mode and another mode)."""
    ev = summary.get("evaluation")
    if not isinstance(ev, dict) or not ev:
        return None
    try:
        return Text(format_evaluation(ev).strip("\n"), no_wrap=True)
    except Exception as e:  # an evaluation we cannot format must not hide the rest
        return Text(f"(evaluation not shown: {e.__class__.__name__}: {e})", style="dim")


class SummaryScreen(Screen[None]):
    BINDINGS = [
        Binding("m,escape", "back", "Monitor"),
        # not in the footer yet: the summary snapshots (branch h18a) would change
        Binding("c", "compare", "Compare with…", show=False),
    ]

    def __init__(self, data: ReportData) -> None:
        super().__init__(id="summary")
        self.data = data

    def compose(self) -> ComposeResult:
        s = self.data.summary
        modes = list(s.get("modes") or [])
        with VerticalScroll(id="summary-body"):
            yield Static(title_text(self.data), id="summary-title")
            yield Static(recommendation_text(s), id="summary-recommendation")
            table = ModesTable(id="summary-modes")
            table.border_title = "modes"
            table.border_subtitle = "★ recommended" if s.get("winner") else ""
            yield table
            notes = verdict_text(modes)
            if notes is not None:
                yield Static(notes, id="summary-notes")
            with Vertical(id="plots"):
                plots = all_plots(s, self.data.series)
                if not plots:
                    yield Static("no successful steps to plot", classes="plot-caption")
                for i, (title, caption, draw) in enumerate(plots):
                    with Vertical(classes="plot-box") as box:
                        box.border_title = title
                        yield PlotView(draw, id=f"plot-{i}", classes="plot")
                        yield Static(Text.from_markup(caption), classes="plot-caption")
            evaluation = evaluation_text(s)
            if evaluation is not None:
                with HorizontalScroll(id="summary-evaluation-box") as box:
                    box.styles.height = len(evaluation.plain.splitlines()) + 3
                    box.border_title = (
                        "evaluation: every mode on the same segments (docs/controllers.md)"
                    )
                    yield Static(evaluation, id="summary-evaluation")
        yield Footer()

    def on_mount(self) -> None:
        s = self.data.summary
        table = self.query_one("#summary-modes", ModesTable)
        modes = list(s.get("modes") or [])
        table.show_modes(modes, s.get("winner"))
        table.styles.height = len(modes) + 3

    def on_resize(self) -> None:
        self.set_class(self.size.width >= WIDE, "-wide")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "back":
            return self.data.live
        return True

    def action_back(self) -> None:
        if self.data.live:
            self.app.pop_screen()

    def action_compare(self) -> None:
        """`c`: compare this run with another (tui/screens/compare.py)."""
        compare_with(self.app, self.data.source)
