"""Modes table: one row per finished mode, the winner (or best so far) marked."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from halospec_tui.tui.state import fmt_num

COLUMNS = ("mode", "avg", "median", "p95", "stddev", "tok/s", "acc", "score", "ok%", "k set")
"""Latencies in ms; "k set": did the draft length provably reach the server (draft_control)."""
VERDICT = {"applied": "yes", "not_applied": "NO", "unknown": "?"}


def mode_cells(m: dict[str, Any], winner: str | None) -> list[Any]:
    name = str(m.get("mode", "?"))
    mark = Text(
        ("★ " if name == winner else "  ") + name, style="bold green" if name == winner else ""
    )
    dc = m.get("draft_control") or {}
    verdict = dc.get("verdict", "") if isinstance(dc, dict) else ""
    rate = m.get("success_rate")
    cells: list[Any] = [
        mark,
        fmt_num(m.get("avg_ms")),
        fmt_num(m.get("median_ms")),
        fmt_num(m.get("p95_ms")),
        fmt_num(m.get("stddev_ms")),
        fmt_num(m.get("tokens_per_s")),
        fmt_num(m.get("acceptance"), 3),
        fmt_num(m.get("score")),
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
        self.add_columns(*COLUMNS)
        self._version = -1

    def show_modes(
        self, modes: list[dict[str, Any]], winner: str | None, version: int = -2
    ) -> None:
        if version == self._version:
            return
        self._version = version
        self.clear()
        for m in modes:
            self.add_row(*mode_cells(m, winner), key=str(m.get("mode")))
