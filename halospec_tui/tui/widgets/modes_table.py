"""Modes table: one row per mode, live while it runs: the figure of merit with its 95 %
interval, the difference from the leader, its label (best, tied, worse), the draft-length
verdict; the recommendation starred."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from halospec_tui.tui.state import fmt_num

COLUMNS = ("mode", "steps", "tok/s", "95% CI", "vs best", "rank", "p95", "acc", "ok%", "k set")
"""Latencies in ms; "k set": did the draft length provably reach the server (draft_control)."""
VERDICT = {"applied": "yes", "not_applied": "NO", "unknown": "?"}
RANK_STYLE = {"best": "bold green", "tied": "green", "worse": "dim", "not_ranked": "yellow"}
RANK_TEXT = {"best": "best", "tied": "tied", "worse": "worse", "not_ranked": "not ranked"}


def interval_text(est: dict[str, Any] | None, nd: int = 1) -> str:
    if not est or est.get("lo") is None or est.get("lo") != est.get("lo"):
        return "–"
    return f"{est['lo']:.{nd}f}–{est['hi']:.{nd}f}"


def mode_cells(m: dict[str, Any], winner: str | None) -> list[Any]:
    name = str(m.get("mode", "?"))
    mark = Text(
        ("★ " if name == winner else "  ") + name, style="bold green" if name == winner else ""
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
        self.add_columns(*COLUMNS)
        self._version = -1

    def show_modes(
        self, modes: list[dict[str, Any]], winner: str | None, version: int = -2
    ) -> None:
        if version == self._version:
            return
        self._version = version
        keys = [str(m.get("mode")) for m in modes]
        if keys == [str(k.value) for k in self.rows]:
            # the same modes: change the cells in place (no flicker, no width reset)
            for key, m in zip(keys, modes, strict=True):
                for col, cell in zip(self.columns, mode_cells(m, winner), strict=True):
                    self.update_cell(key, col, cell, update_width=True)
            return
        self.clear()
        for key, m in zip(keys, modes, strict=True):
            self.add_row(*mode_cells(m, winner), key=key)
