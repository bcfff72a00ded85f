"""Event log: mode starts, thresholds, load on/off, failures with their error text, notices."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

from halospec_tui.tui.state import LogEntry, fmt_duration

STYLES = {
    "info": "",
    "mode": "bold cyan",
    "load": "bold magenta",
    "warning": "yellow",
    "error": "bold red",
    "done": "bold green",
}

MAX_LINES = 1000


class EventLog(RichLog):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=MAX_LINES, wrap=True, markup=False, auto_scroll=True)

    def add_entries(self, entries: list[LogEntry], dropped: int = 0) -> None:
        if dropped:
            self.write(Text(f"… {dropped} earlier messages not shown", style="dim"))
        for e in entries:
            line = Text()
            line.append(
                f"{fmt_duration(e.elapsed) if e.elapsed is not None else ' -:--'} ", style="dim"
            )
            if e.level in ("warning", "error"):
                line.append(f"{e.level}: ", style=STYLES[e.level])
            line.append(e.text, style=STYLES.get(e.level, ""))
            self.write(line)
