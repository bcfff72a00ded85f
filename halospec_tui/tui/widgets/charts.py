"""Live sparklines for the current mode, and plotext plots rendered into a Static.

Plots use plotext 6 directly: a figure is drawn at the widget's size, `build().string()` gives
ANSI text, and `rich.text.Text.from_ansi` turns it into something a Static shows (dolphie does
the same). textual-plotext is not used: it needs plotext < 6 (see docs/monitor.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

from halospec_tui.tui.state import PCT_WINDOW, MonitorState, fmt_num

BARS = " ▁▂▃▄▅▆▇█"


def spark_rows(
    data: Sequence[float], width: int, height: int, lo: float | None = None, hi: float | None = None
) -> list[str]:
    """Block-character bars for the last `width` values (one column each), `height` rows.

    `lo`/`hi` fix the scale (draft length from 0, acceptance 0..1); otherwise the data's own
    min and max are used, so the shape shows even when values differ by a few percent."""
    vals = list(data)[-width:] if width > 0 else []
    if not vals or height <= 0:
        return [" " * max(width, 0)] * max(height, 0)
    vlo = min(vals) if lo is None else lo
    vhi = max(vals) if hi is None else max(hi, max(vals))
    if lo is None and vhi > vlo:
        vlo -= (vhi - vlo) * 0.15  # the smallest value still shows a sliver
    span = vhi - vlo
    levels = height * 8
    cells = [
        levels if span <= 0 else max(0, min(levels, round((v - vlo) / span * levels))) for v in vals
    ]
    rows = []
    for r in range(height - 1, -1, -1):
        base = r * 8
        rows.append("".join(BARS[max(0, min(8, c - base))] for c in cells).ljust(width))
    return rows


class SparkBars(Widget):
    """A cheap sparkline: one style, one column per step, newest on the right."""

    DEFAULT_CSS = "SparkBars { height: 1; }"

    def __init__(
        self, *, lo: float | None = None, hi: float | None = None, classes: str | None = None
    ) -> None:
        super().__init__(classes=classes)
        self.lo, self.hi = lo, hi
        self._data: Sequence[float] = ()

    def set_data(self, data: Sequence[float], hi: float | None = None) -> None:
        self._data = data
        if hi is not None:
            self.hi = hi
        self.refresh()

    def render(self) -> Text:
        w, h = self.content_size.width, self.content_size.height
        return Text("\n".join(spark_rows(self._data, w, h, self.lo, self.hi)), no_wrap=True)


class MetricRow(Vertical):
    """One line with the name, the last value and the mode's p50/p95; the sparkline below."""

    def __init__(
        self,
        name: str,
        label: str,
        *,
        lo: float | None = None,
        hi: float | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id, classes="metric")
        self._metric = name
        self._label = label
        self._lo, self._hi = lo, hi

    def compose(self) -> ComposeResult:
        yield Static("", classes="metric-head")
        yield SparkBars(lo=self._lo, hi=self._hi, classes=f"metric-spark -{self._metric}")

    def set_values(
        self, data: Sequence[float], last: str, p50: str, p95: str, note: str = ""
    ) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f"{self._label:<13}", style="bold")
        if note:
            t.append(note, style="dim")
        else:
            t.append("last ", style="dim")
            t.append(last, style="bold")
            t.append("  p50 ", style="dim")
            t.append(p50)
            t.append("  p95 ", style="dim")
            t.append(p95)
        self.query_one(".metric-head", Static).update(t, layout=False)
        self.query_one(SparkBars).set_data(list(data))


class ModeCharts(Vertical):
    """Latency, draft length and acceptance of the current mode (the progress pane names it)."""

    def compose(self) -> ComposeResult:
        yield MetricRow("latency", "latency ms", id="m-latency")
        yield MetricRow("draft", "draft_length", lo=0.0, hi=8.0, id="m-draft")
        yield MetricRow("acceptance", "acceptance", lo=0.0, hi=1.0, id="m-acceptance")

    def show(self, s: MonitorState) -> None:
        m = s.mode
        if m is None:
            for row in self.query(MetricRow):
                row.set_values([], "–", "–", "–")
            return
        p50, p95 = m.latency_pct()
        note = f"  (of the last {PCT_WINDOW} steps)" if m.windowed else ""
        self.query_one("#m-latency", MetricRow).set_values(
            m.latency, fmt_num(m.last_latency), fmt_num(p50), fmt_num(p95) + note
        )
        d50, d95 = m.draft_pct()
        self.query_one("#m-draft", MetricRow).set_values(
            m.draft_length,
            str(m.last_k) if m.last_k is not None else "–",
            fmt_num(d50, 0),
            fmt_num(d95, 0),
        )
        acc = self.query_one("#m-acceptance", MetricRow)
        if m.acceptance:
            a50, a95 = m.acceptance_pct()
            acc.set_values(
                m.acceptance, fmt_num(m.last_acceptance, 2), fmt_num(a50, 2), fmt_num(a95, 2)
            )
        elif m.last_latency is None:
            acc.set_values([], "–", "–", "–")  # no step of this mode yet
        else:
            acc.set_values([], "", "", "", note="not reported by this server")


# --- plotext -----------------------------------------------------------------------------

Draw = Callable[[Any, int, int], None]


def render_plot(draw: Draw, width: int, height: int, *, colorless: bool = False) -> Text:
    """Draw one plotext figure at width x height cells and return it as Rich text.

    `colorless` (NO_COLOR; Textual takes it out of the environment, so the app's `no_color`
    is passed in) uses plotext's colourless theme; phases then differ by marker symbol."""
    import plotext as plt

    plt.terminal.limit(False, False)  # the widget, not the terminal, sets the size
    f = plt.figure
    f.clear()
    f.theme("colorless" if colorless else "simple")
    f.plot_size(max(width, 20), max(height, 6))
    try:
        draw(f, width, height)
        out = f.build().string()
    except Exception as e:  # a plot must never take the screen down
        return Text(f"(plot failed: {e.__class__.__name__}: {e})", style="dim")
    finally:
        f.clear()
    if colorless:
        return Text(plt.uncolorize(out), no_wrap=True)
    return Text.from_ansi(out, no_wrap=True)


class PlotView(Static):
    """A Static that redraws its plotext figure whenever its size changes."""

    def __init__(self, draw: Draw, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes)
        self._draw = draw
        self._drawn_at: tuple[int, int] | None = None

    def on_resize(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        w, h = self.content_size.width, self.content_size.height
        if w <= 0 or h <= 0 or self._drawn_at == (w, h):
            return
        self._drawn_at = (w, h)
        colorless = bool(getattr(self.app, "no_color", False))
        self.update(render_plot(self._draw, w, h, colorless=colorless), layout=False)
