"""End-of-run summary: the modes table, the draft-control verdicts and the plotext plots."""

from __future__ import annotations

import contextlib
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.css.query import NoMatches
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


def title_text(data: ReportData, width: int = 0) -> Text:
    """Two lines: what ran where, then the answer. Keys that do not fit `width` are left out
    (the draft channel first, then the backend) rather than cut at the edge."""
    s = data.summary
    t = Text()
    t.append(" SUMMARY ", style="bold reverse")
    t.append(f"  {short_path(data.source)}", style="bold")
    keys = [k for k in ("profile", "backend", "draft_channel", "model") if s.get(k)]
    for drop in ("draft_channel", "backend"):
        need = t.cell_len + sum(len(f"  {k} {s[k]}") for k in keys)
        if width and need > width and drop in keys:
            keys.remove(drop)
    for key in keys:
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


def split_recommendation(summary: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The answer's lines, and the settings for the other kinds of server (the indented lines
    under "apply on ..."), which go below the modes table so the answer and its row fit the
    first screen at 80x24."""
    lines = format_recommendation(summary)
    head = [x for x in lines if not x.startswith("    ")]
    others = [x.strip() for x in lines if x.startswith("    ")]
    return head, others


def recommendation_text(summary: dict[str, Any]) -> Text:
    """The answer: why this k, how sure, what it is tied with, how to apply it."""
    lines, _ = split_recommendation(summary)
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


def evaluation_text(ev: dict[str, Any], width: int | None = None) -> Text:
    """The runner's per-segment evaluation (runs with an adaptive mode and another mode),
    its tables and lines fitted to `width`."""
    try:
        return Text(format_evaluation(ev, width=width).strip("\n"), no_wrap=True)
    except Exception as e:  # an evaluation we cannot format must not hide the rest
        return Text(f"(evaluation not shown: {e.__class__.__name__}: {e})", style="dim")


class EvaluationView(Static):
    """The evaluation's text at the width it has: tables keep the columns that fit, the
    sentences wrap (format_evaluation), so nothing is cut at the box's edge."""

    def __init__(self, ev: dict[str, Any], *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.ev = ev
        self._width = 0

    def on_resize(self) -> None:
        width = self.content_size.width
        if width > 0 and width != self._width:
            self._width = width
            text = evaluation_text(self.ev, width)
            self.update(text)
            # lines are never wrapped here (format_evaluation wrapped them): the height is
            # the line count (an auto height measured while empty stays at 1 otherwise)
            self.styles.height = max(1, len(text.plain.splitlines()))


class SummaryScreen(Screen[None]):
    """The answer first: the title, the recommendation and the modes table sized so that the
    recommended row shows without scrolling at 80x24; plots and the evaluation below, in one
    scrolling body, with a line at the bottom that says so while there is more below."""

    BINDINGS = [
        Binding("m,escape", "back", "Monitor"),
        # in ? help; kept out of the footer so that the summary's footer fits 80 columns
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
            _, others = split_recommendation(s)
            if others:
                apply = Static(Text("\n".join(others)), id="summary-apply")
                apply.border_title = "the same k on other kinds of server"
                yield apply
            with Vertical(id="plots"):
                plots = all_plots(s, self.data.series)
                if not plots:
                    yield Static("no successful steps to plot", classes="plot-caption")
                for i, (title, caption, draw) in enumerate(plots):
                    with Vertical(classes="plot-box") as box:
                        box.border_title = title
                        yield PlotView(draw, id=f"plot-{i}", classes="plot")
                        yield Static(Text.from_markup(caption), classes="plot-caption")
            if isinstance(s.get("evaluation"), dict) and s["evaluation"]:
                with Vertical(id="summary-evaluation-box") as box:
                    box.border_title = "evaluation: every mode on the same segments"
                    yield EvaluationView(s["evaluation"], id="summary-evaluation")
        yield Static("", id="summary-more")
        yield Footer()

    def on_mount(self) -> None:
        try:
            table = self.query_one("#summary-modes", ModesTable)
        except NoMatches:  # the app is closing as the summary opens: nothing to fill
            return
        s = self.data.summary
        modes = list(s.get("modes") or [])
        table.show_modes(modes, s.get("winner"))
        table.styles.height = len(modes) + 3
        body = self.query_one("#summary-body", VerticalScroll)
        body.focus()  # PgDn and the arrows scroll the page (Tab reaches the table)
        self.watch(body, "scroll_y", self._more_hint, init=False)
        self.watch(body, "max_scroll_y", self._more_hint, init=False)

    def on_resize(self) -> None:
        self.set_class(self.size.width >= WIDE, "-wide")
        with contextlib.suppress(NoMatches):  # closing as it opens
            # less the body's scrollbar
            self.query_one("#summary-title", Static).update(
                title_text(self.data, self.size.width - 2)
            )
        self.call_after_refresh(self._fit_table)

    def _fit_table(self) -> None:
        """At most the rows left under the title and the recommendation, so the recommended
        row (the table scrolls to it) is on the first screen."""
        if not self.is_attached or not self.query("#summary-modes"):
            return
        table = self.query_one("#summary-modes", ModesTable)
        n = len(self.data.summary.get("modes") or [])
        above = sum(
            w.outer_size.height
            for w in (
                self.query_one("#summary-title"),
                self.query_one("#summary-recommendation"),
            )
        )
        room = self.size.height - above - 2  # the footer and the "more below" line
        table.styles.height = max(5, min(n + 3, room))
        table.call_after_refresh(table.show_winner)
        self.call_after_refresh(self._more_hint)

    def _more_hint(self, *_: object) -> None:
        if not self.is_attached or not self.query("#summary-more"):
            return
        body = self.query_one("#summary-body", VerticalScroll)
        hint = self.query_one("#summary-more", Static)
        if body.max_scroll_y <= 0:
            hint.update("")
            hint.display = False
            return
        hint.display = True
        if body.scroll_y < body.max_scroll_y - 0.5:  # an animated scroll may stop a hair short
            below = "plots" + (" and the evaluation" if self.query("#summary-evaluation") else "")
            hint.update(
                Text(f" ↓ more below: {below} · PgDn, ↓ or the mouse wheel scroll", style="dim")
            )
        else:
            hint.update(Text(" ↑ end of the summary · Home goes back to the top", style="dim"))

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
