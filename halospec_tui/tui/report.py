"""Reading a finished (or cut-short) run back for the summary screen; no Textual here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from halospec_tui import profile as profile_mod
from halospec_tui.core.results import find_csv, load_rows, summarize_rows
from halospec_tui.tui.messages import ReportData
from halospec_tui.tui.plots import series_from_rows


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_report(
    path: str | Path, *, summary: dict[str, Any] | None = None, live: bool = False
) -> ReportData:
    """Rows from a run folder or a CSV (ours or the original HaloSpec's eight columns).

    The summary is, in order of preference: the one given (the run that just ended), the run
    folder's summary.json when it covers every mode in the CSV, or one computed from the rows
    (keeping any draft-control verdicts summary.json has).
    Raises results.ResultsFileError or profile.ProfileError with a one-line message.
    """
    p = Path(path)
    csv_path = find_csv(p)
    rows = load_rows(csv_path)
    folder = p if p.is_dir() else csv_path.parent
    prof = None
    if (folder / "profile.toml").exists():
        try:
            prof = profile_mod.load(folder / "profile.toml")
        except profile_mod.ProfileError:
            prof = None
    row_modes = list(dict.fromkeys(r.mode for r in rows))
    if summary is None:
        saved = _read_json(folder / "summary.json") if (folder / "summary.json").exists() else None
        covered = {m.get("mode") for m in (saved or {}).get("modes", []) if isinstance(m, dict)}
        if saved is not None and set(row_modes) <= covered:
            summary = saved
        else:
            summary = summarize_rows(rows, prof)
            if saved:
                verdicts = {
                    m.get("mode"): m.get("draft_control")
                    for m in saved.get("modes", [])
                    if isinstance(m, dict)
                }
                for m in summary["modes"]:
                    if verdicts.get(m["mode"]):
                        m["draft_control"] = verdicts[m["mode"]]
                for key in ("backend", "draft_channel", "model", "profile"):
                    if saved.get(key) and not summary.get(key):
                        summary[key] = saved[key]
    return ReportData(summary=summary, series=series_from_rows(rows), source=str(p), live=live)
