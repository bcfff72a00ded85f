"""Progress pane: mode i of n, step j of N, a whole-run bar with the time left."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from halospec_tui.tui.state import MonitorState, fmt_duration


class RunProgress(Static):
    def show(self, s: MonitorState) -> None:
        m = s.mode
        t = Text(no_wrap=True, overflow="ellipsis")
        if m is None:
            n = len(s.modes)
            t.append(f" mode –/{n or '–'}", style="bold")
        elif s.order in ("interleaved", "blocks") and s.round:
            t.append(f" round {s.round}", style="bold")
            t.append(f" · charts: {m.name} step {m.step}")
        else:
            t.append(f" mode {m.index + 1}/{m.count} ", style="bold")
            t.append(m.name, style="bold")
            if s.phase == "warmup" and m.step == 0:
                t.append(f" · warmup {m.warmup_i}/{m.warmup}")
            else:
                t.append(f" · step {m.step}/{m.steps}")
        t.append(f" · {s.steps_done}/{s.total_steps or '–'} steps in all")
        if s.failures:
            t.append(f" · {s.failures} failed", style="bold red")
        t.append(f" · elapsed {fmt_duration(s.elapsed())}", style="dim")
        t.append("\n")
        done, total = s.work()
        frac = min(1.0, done / total) if total else 0.0
        left = s.time_left()
        suffix = f" {frac * 100:5.1f} % · {fmt_duration(left)} left"
        width = max(10, (self.size.width or 80) - len(suffix) - 2)
        filled = int(round(frac * width))
        t.append(" ")
        t.append("━" * filled, style="bold green")
        t.append("━" * (width - filled), style="dim")
        t.append(suffix)
        self.update(t, layout=False)  # fixed size: no relayout

    def on_resize(self) -> None:
        app = self.app
        state = getattr(app, "state", None)
        if state is not None:
            self.show(state)
