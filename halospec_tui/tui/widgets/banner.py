"""Phase banner: one coloured line; while load is on, how long it ran and how long is left."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from halospec_tui.core.recommendation import mode_name, standings_line
from halospec_tui.tui.state import MonitorState, fmt_duration

BANNER_PHASES = ("starting", "warmup", "steady", "load", "recovery", "paused", "stopping", "done")


class PhaseBanner(Static):
    def show(self, s: MonitorState) -> None:
        phase = s.banner_phase()
        for p in BANNER_PHASES:
            self.set_class(p == phase, f"-{p}")
        self.set_class(bool(s.error), "-error")
        t = Text(no_wrap=True, overflow="ellipsis")
        label = phase.upper()
        if phase == "done":
            label = "ERROR" if s.error else "CANCELLED" if s.cancelled else "DONE"
        t.append(f" {label} ", style="bold")
        t.append("  ")
        t.append(self._detail(s, phase))
        self.update(t, layout=False)  # fixed size: no relayout

    @staticmethod
    def _detail(s: MonitorState, phase: str) -> str:
        m = s.mode
        if phase == "starting":
            return f"starting the {s.backend or 'backend'}…"
        if phase == "stopping":
            return "stopping: finishing or abandoning the step in flight, then stopping burners and servers…"
        if phase == "paused":
            if m is None:
                where = ""
            elif m.step == 0 and s.phase == "warmup" and m.warmup_i < m.warmup:
                where = f" before {m.name} warmup request {m.warmup_i + 1}/{m.warmup}"
            else:
                where = f" before {m.name} step {min(m.step + 1, m.steps)}"
            return f"paused{where} · press p to resume"
        if phase == "done":
            if s.error:
                return s.error
            rec = s.standings or {}
            w = mode_name(s.winner) if s.winner else "none"
            tied = [mode_name(t) for t in rec.get("tied") or [] if t != s.winner]
            more = f" (tied with {', '.join(tied)})" if tied else ""
            return f"{s.steps_done} steps · recommended {w}{more} · q quits"
        if phase == "load":
            el = s.load_elapsed()
            parts = [f"load on for {fmt_duration(el)}"]
            if s.load_scheduled and s.load_duration:
                left = max(0.0, s.load_duration - (el or 0.0))
                parts.append(f"{fmt_duration(left)} left")
            else:
                parts.append("manual · press l to stop")
            parts.append(f"{s.load_cores} core" + ("" if s.load_cores == 1 else "s"))
            if s.phase == "warmup" and m is not None:
                parts.append(f"warmup {m.warmup_i}/{m.warmup}")
            return " · ".join(parts)
        if phase == "warmup":
            if m is None:
                return "warming up"
            return (
                f"{m.name} warmup request {min(m.warmup_i + 1, m.warmup)}/{m.warmup} (not logged)"
            )
        if phase == "recovery":
            return _rounds(s, f"load stopped; recovery since step {s.phase_step}")
        if phase == "steady":
            return _rounds(
                s, "no load" + (f" since step {s.phase_step}" if s.phase_step > 1 else "")
            )
        return ""


def _rounds(s: MonitorState, text: str) -> str:
    """With rounds: which round, and what is being decided ("k = 4 vs k = 6: 78 % sure")."""
    if s.order not in ("interleaved", "blocks") or not s.round:
        return text
    planned = s.rounds_planned
    head = f"round {s.round}" + (f"/{planned}" if planned and s.until == "steps" else "")
    if s.until == "decided":
        head += " (until decided)"
    line = standings_line(s.standings) if s.standings else ""
    return " · ".join(x for x in (head, line, text) if x)
