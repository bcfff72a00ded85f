"""Modes table: one row per mode, live while it runs: the figure of merit with its 95 %
interval, the difference from the leader, its label (best, tied, worse), the draft-length
verdict; the recommendation starred.

The table fits its width: columns go by `PRIORITY` (core/tables.py) rather than being cut at the
edge, `adaptive:NAME` reads `ad:NAME` only when that keeps a column, and when the rows do not
all fit in the pane's height it scrolls so the recommended (or leading) row shows."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from halospec_tui.core.tables import Fit, column_widths, fit_table
from halospec_tui.modes import short_name
from halospec_tui.tui.state import fmt_num

COLUMNS = ("mode", "steps", "tok/s", "95% CI", "vs best", "rank", "p95", "acc", "ok%", "k set")
"""Latencies in ms; "k set": did the draft length provably reach the server (draft_control)."""
PRIORITY = (0, 6, 1, 4, 3, 2, 9, 8, 7, 5)
"""Per column of COLUMNS, which goes last when the width is short (0 stays longest): the
mode, tok/s, its rank, how far from the best, the interval, whether k reached the server."""
VERDICT = {"applied": "yes", "not_applied": "NO", "unknown": "?"}
RANK_STYLE = {"best": "bold green", "tied": "green", "worse": "dim", "not_ranked": "yellow"}
RANK_TEXT = {"best": "best", "tied": "tied", "worse": "worse", "not_ranked": "not ranked"}


def interval_text(est: dict[str, Any] | None, nd: int = 1) -> str:
    if not est or est.get("lo") is None or est.get("lo") != est.get("lo"):
        return "–"
    return f"{est['lo']:.{nd}f}–{est['hi']:.{nd}f}"


def mode_cells(m: dict[str, Any], winner: str | None, *, short: bool = False) -> list[Text]:
    name = str(m.get("mode", "?"))
    mark = Text(
        ("★ " if name == winner else "  ") + (short_name(name) if short else name),
        style="bold green" if name == winner else "",
    )
    dc = m.get("draft_control") or {}
    verdict = dc.get("verdict", "") if isinstance(dc, dict) else ""
    verdict = verdict or str((m.get("confidence") or {}).get("verdict") or "")  # provisional
    rate = m.get("success_rate")
    conf = m.get("confidence") or {}
    label = conf.get("label", "")
    vs = conf.get("vs_leader") or {}
    est = conf.get("estimate") or {}
    tps = est.get("value") if est.get("value") is not None else m.get("tokens_per_s")
    dirty = m.get("contaminated_steps") or 0
    cells: list[Any] = [
        mark,
        f"{m.get('steps', 0)}" + (f" ({dirty}!)" if dirty else ""),
        fmt_num(tps),
        interval_text(est) if "tokens_per_s" in str(conf) or est else "–",
        "–" if vs.get("diff") is None else f"{vs['diff'] * 100:+.1f}%",
        Text(RANK_TEXT.get(label, "…" if m.get("live") else "–"), style=RANK_STYLE.get(label, "")),
        fmt_num(m.get("p95_ms")),
        fmt_num(m.get("acceptance"), 3),
        fmt_num(None if rate is None else 100 * rate, 0),
        Text(
            VERDICT.get(verdict, verdict or "–"),
            style="bold red" if verdict == "not_applied" else "",
        ),
    ]
    return [c if isinstance(c, Text) else Text(c, justify="right") for c in cells]


class ModesTable(DataTable):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.cell_padding = 1
        self.zebra_stripes = True
        self._version = -1
        self._modes: list[dict[str, Any]] = []
        self._winner: str | None = None
        self._fit: Fit | None = None
        self._layout: tuple[tuple[int, int], ...] = ()
        self._width = 0

    @property
    def shown_columns(self) -> tuple[str, ...]:
        """The headers on screen now (tests and docs read them)."""
        return tuple(COLUMNS[i] for i in self._fit.columns) if self._fit else ()

    def show_modes(
        self, modes: list[dict[str, Any]], winner: str | None, version: int = -2
    ) -> None:
        if version == self._version:
            return
        self._version = version
        self._modes, self._winner = list(modes), winner
        self._draw()

    def on_resize(self) -> None:
        if self.size.width != self._width:
            self._draw()

    def _available(self) -> int:
        """Columns for the cells: the width less a vertical scrollbar when rows overflow."""
        w = self.size.width or 80
        if len(self._modes) + 1 > self.size.height - 1 and self.size.height > 0:
            w -= self.styles.scrollbar_size_vertical
        return w

    def _draw(self) -> None:
        """Fit the columns, then either change the cells in place (same modes, columns and
        widths: no flicker) or rebuild the table with explicit column widths. Explicit widths
        because auto widths are measured later, on idle, and a rebuild racing that measure
        left columns as narrow as their headers ("fi", "wors")."""
        self._width = self.size.width
        rows = [mode_cells(m, self._winner) for m in self._modes]
        short = [mode_cells(m, self._winner, short=True) for m in self._modes]
        plain = [[c.plain for c in r] for r in rows]
        short_plain = [[c.plain for c in r] for r in short]
        fit = fit_table(COLUMNS, plain, PRIORITY, self._available(), short_rows=short_plain)
        if fit.short_names:
            rows, plain = short, short_plain
        widths = column_widths(COLUMNS, plain)
        layout = tuple((i, widths[i]) for i in fit.columns)
        keys = [str(m.get("mode")) for m in self._modes]
        cells = [[r[i] for i in fit.columns] for r in rows]
        if layout == self._layout and keys == [str(k.value) for k in self.rows]:
            for key, row in zip(keys, cells, strict=True):
                for col, cell in zip(self.columns, row, strict=True):
                    self.update_cell(key, col, cell)
        else:
            self.clear(columns=True)
            for i, w in layout:
                self.add_column(COLUMNS[i], width=w, key=COLUMNS[i])
            for key, row in zip(keys, cells, strict=True):
                self.add_row(*row, key=key)
            self._layout = layout
        self._fit = fit
        self.call_after_refresh(self.show_winner)

    def show_winner(self) -> None:
        """Scroll so the recommended (or leading) row is on screen."""
        keys = [str(m.get("mode")) for m in self._modes]
        if self._winner not in keys:
            return
        idx = keys.index(self._winner)
        visible = max(1, self.scrollable_content_region.height - 1)  # less the header row
        top = int(self.scroll_y)
        if idx < top or idx >= top + visible:
            self.scroll_to(y=max(0, idx - visible + 1), animate=False)
