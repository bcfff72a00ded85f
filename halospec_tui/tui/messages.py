"""The few messages that cross from worker threads to the UI thread."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.message import Message

from halospec_tui.core.events import Event


class EventsBatch(Message):
    """Runner events collected since the last batch (see pump.EventPump)."""

    def __init__(self, events: list[Event]) -> None:
        super().__init__()
        self.events = events


class BackendFailed(Message):
    """The backend did not come up: the app shows why and exits with status 3."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class RunEnded(Message):
    """The sweep thread has returned (finished, cancelled or crashed)."""

    def __init__(self, summary: dict[str, Any] | None, error: str = "") -> None:
        super().__init__()
        self.summary = summary
        self.error = error


@dataclass
class ReportData:
    """Everything the summary screen draws: the summary dict and the plotted columns of the
    non-fixed modes (plots.ModeSeries by mode), not the rows themselves."""

    summary: dict[str, Any]
    series: dict[str, Any]
    source: str  # run folder or CSV shown in the title
    live: bool = False


class ReportReady(Message):
    def __init__(self, data: ReportData) -> None:
        super().__init__()
        self.data = data


class Exported(Message):
    def __init__(self, paths: tuple[Path, Path] | None, error: str = "") -> None:
        super().__init__()
        self.paths = paths
        self.error = error
