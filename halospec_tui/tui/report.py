"""Reading a finished (or cut-short) run back for the summary screen; no Textual here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from halospec_tui.core.results import find_csv, load_rows, read_run
from halospec_tui.tui.messages import ReportData
from halospec_tui.tui.plots import series_from_rows


def load_report(
    path: str | Path,
    *,
    summary: dict[str, Any] | None = None,
    live: bool = False,
    run: int | None = None,
) -> ReportData:
    """Rows from a run folder or a CSV (ours or the original HaloSpec's eight columns), and
    the summary: the one given (the run that just ended), else core.results.read_run's.
    Raises results.ResultsFileError or profile.ProfileError with a one-line message."""
    p = Path(path)
    if summary is None:
        rows, summary = read_run(p, run)
    else:
        rows = load_rows(find_csv(p))
    return ReportData(summary=summary, series=series_from_rows(rows), source=str(p), live=live)
