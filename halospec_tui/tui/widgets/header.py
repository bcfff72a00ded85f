"""Header pane: profile, backend, how k reaches the server, model, run folder."""

from __future__ import annotations

import os

from rich.text import Text
from textual.widgets import Static

from halospec_tui.tui.state import MonitorState


def short_path(path: str) -> str:
    """The run folder relative to the working directory when it lies inside it."""
    if not path:
        return "–"
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


class RunHeader(Static):
    """Two lines: what runs where, and where the files go."""

    def show(self, s: MonitorState) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" HaloSpec ", style="bold reverse")
        t.append("  profile ", style="dim")
        t.append(s.profile or "–", style="bold")
        t.append("  backend ", style="dim")
        t.append(s.backend or "–", style="bold")
        url = f" {s.url}" if s.url and s.url.startswith("http") else ""
        rest = len("  model ") + len(s.model or "–")
        if url and t.cell_len + len(url) + rest <= (self.size.width or 80):
            t.append(url, style="dim")  # the model matters more than the address on a narrow line
        t.append("  model ", style="dim")
        t.append(s.model or "–", style="bold")
        t.append("\n")
        t.append(" draft length ", style="dim")
        t.append(s.channel_text(), style="bold red" if s.draft_channel == "none" else "bold")
        t.append("  run ", style="dim")
        t.append(short_path(s.run_dir))
        self.update(t, layout=False)  # fixed size: no relayout
        self._shown = s

    def on_resize(self) -> None:
        s = getattr(self, "_shown", None)
        if s is not None:
            self.show(s)
