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
        self._room = (self.size.width or 80) - t.cell_len - 1
        t.append(self._detail(s, phase))
        self.update(t, layout=False)  # fixed size: no relayout

    def on_resize(self) -> None:
        state = getattr(self.app, "state", None)
        if state is not None:
            self.show(state)

    def _detail(self, s: MonitorState, phase: str) -> str:
        m = s.mode
        if phase == "starting":
            return f"starting the {s.backend or 'backend'}…"
        if phase == "stopping":
            return fit_parts(
                [
                    "stopping: the step in flight ends (5 s at most)",
                    "then burners and servers stop…",
                ],
                getattr(self, "_room", 0),
            )
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
            ready = getattr(self.app, "report", None) is not None
            many = f" (tied with {len(tied)} other{'s' if len(tied) > 1 else ''})" if tied else ""
            listed = f" (tied with {', '.join(tied)})" if tied else ""
            long_keys = (" · v shows the summary" if ready else "") + " · q quits"
            keys = (" · v summary" if ready else "") + " · q quits"
            lines = [
                f"{s.steps_done} steps · recommended {w}{listed}{long_keys}",
                f"{s.steps_done} steps · recommended {w}{many}{long_keys}",
                f"recommended {w}{listed}{keys}",
                f"recommended {w}{many}{keys}",
                f"recommended {w}{keys}",
            ]
            # the keys stay: a long tie list shortens to its count rather than cut them off
            room = getattr(self, "_room", 0)
            return next((x for x in lines if not room or len(x) <= room), lines[-1])
        if phase == "load":
            el = s.load_elapsed()
            parts = ["load on" if el is None else f"load on for {fmt_duration(el)}"]
            if s.load_scheduled and s.load_duration and el is not None:
                left = s.load_duration - el
                parts.append(f"{fmt_duration(left)} left" if left > 0 else "stopping")
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
            text = f"load stopped; recovery since step {s.phase_step}"
        elif phase == "steady":
            text = "no load" + (f" since step {s.phase_step}" if s.phase_step > 1 else "")
        else:
            return ""
        return fit_parts(_rounds(s, text), getattr(self, "_room", 0))


def fit_parts(parts: list[str], room: int) -> str:
    """The parts joined by ' · ', the last ones left out while the line is longer than
    `room` (the phase's own words go first: the banner's colour says the phase too)."""
    parts = [p for p in parts if p]
    while len(parts) > 1 and room > 0 and len(" · ".join(parts)) > room:
        parts.pop()
    return " · ".join(parts)


def _rounds(s: MonitorState, text: str) -> list[str]:
    """With rounds: which round, and what is being decided ("k = 4 vs k = 6: 78 % sure")."""
    if s.order not in ("interleaved", "blocks") or not s.round:
        return [text]
    planned = s.rounds_planned
    head = f"round {s.round}" + (f"/{planned}" if planned and s.until == "steps" else "")
    if s.until == "decided":
        head += " (until decided)"
    line = standings_line(s.standings) if s.standings else ""
    if s.standings and not s.standings.get("mode"):
        # the reason's kind fits the line; the per-mode detail is in the events and summary
        line = line.split(" (")[0]
    return [head, line, text]
