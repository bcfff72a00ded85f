"""Controller pane: k now, its inputs (EMA and thresholds, or acceptance and targets), why."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from halospec_tui.modes import FIXED
from halospec_tui.tui.state import MonitorState, fmt_num

_SHOWN = {
    "ema_ms",
    "low_thr_ms",
    "high_thr_ms",
    "acceptance",
    "drafted_since_adjust",
    "window_drafts",
    "p_low_ms",
    "p_high_ms",
}


class ControllerPane(Static):
    def __init__(
        self, acceptance_targets: dict[str, float] | None = None, *, id: str | None = None
    ) -> None:
        super().__init__("", id=id)
        self.targets = acceptance_targets or {}

    def show(self, s: MonitorState) -> None:
        t = Text()
        kind = s.ctl_kind or "–"
        t.append("controller ", style="dim")
        t.append(kind, style="bold")
        if s.ctl_step and kind != FIXED:
            t.append(f" · step {s.ctl_step}", style="dim")
        t.append("\nk now ", style="dim")
        t.append(str(s.ctl_k) if s.ctl_k is not None else "–", style="bold")
        if s.ctl_prev_k is not None and s.ctl_prev_k != s.ctl_k:
            t.append(f" (was {s.ctl_prev_k})", style="dim")
        v: dict[str, Any] = {
            **s.thresholds,
            **{k: x for k, x in s.ctl_values.items() if x is not None},
        }
        if kind == "latency" or "ema_ms" in v or "low_thr_ms" in v:
            t.append("\nEMA ", style="dim")
            t.append(fmt_num(v.get("ema_ms"), 1, " ms"))
            t.append("\nlow_thr ", style="dim")
            t.append(fmt_num(v.get("low_thr_ms"), 1))
            t.append(" high_thr ", style="dim")
            t.append(fmt_num(v.get("high_thr_ms"), 1))
        elif kind == "acceptance" or "acceptance" in v:
            t.append("\nwindow acceptance ", style="dim")
            t.append(fmt_num(v.get("acceptance"), 3))
            if v.get("window_drafts") is not None:
                t.append(f" ({fmt_num(v.get('window_drafts'), 0)} drafts)", style="dim")
            g = self.targets
            if g:
                t.append("\nup >", style="dim")
                t.append(f" {g.get('up', 0):g}/{g.get('up_big', 0):g}")
                t.append("  down <", style="dim")
                t.append(f" {g.get('down', 0):g}/{g.get('down_big', 0):g}")
        elif kind == FIXED:
            t.append("\nk is fixed: no decisions", style="dim")
        for key, x in v.items():
            if key in _SHOWN or x is None:
                continue
            t.append(f"\n{key} ", style="dim")
            t.append(fmt_num(float(x), 3) if isinstance(x, int | float) else str(x))
        t.append("\nwhy ", style="dim")
        t.append(s.ctl_reason or "–")
        self.update(t, layout=False)  # fixed size: no relayout
