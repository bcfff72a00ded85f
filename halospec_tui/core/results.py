"""Run folder files, written as the run goes so a crash keeps every finished step.

results.csv      HaloSpec's eight columns first (same names, order, meaning), then ours
responses.jsonl  per step: reply text and server timings (full reply with HALOSPEC_DEBUG_JSON=1)
summary.json     per-mode statistics, verdicts and the winner (rewritten after every mode)
profile.toml     the fully resolved profile (written by the session)

Every text is scrubbed of secrets once more on its way to a file (redact.py; the backends
did it first), and responses.jsonl keeps at most TEXT_CAP characters of a reply's text and
REPLY_CAP of a debug reply, so a huge reply cannot fill the disk.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from halospec_tui import redact, textfile
from halospec_tui.core import verdict
from halospec_tui.core.events import Event, ModeFinished, RunFinished, StepResult, StepRow
from halospec_tui.core.recommendation import (
    attach_standings,
    ranking_refusal,
    recommend_from_rows,
    with_apply,
)
from halospec_tui.core.stats import summarize_mode
from halospec_tui.profile import Profile, ScoreSettings

HALOSPEC_COLUMNS = [
    "global_step",
    "step",
    "mode",
    "phase",
    "draft_length",
    "success",
    "latency_ms",
    "tokens",
]
COLUMNS = [f.name for f in dataclasses.fields(StepRow)]
assert COLUMNS[:8] == HALOSPEC_COLUMNS
_ERROR = COLUMNS.index("error")
TEXT_CAP = 64 * 1024  # characters of a reply's text kept in responses.jsonl
REPLY_CAP = 256 * 1024  # characters of a debug reply (HALOSPEC_DEBUG_JSON=1) kept


def capped(text: str, cap: int = TEXT_CAP) -> str:
    """`text`, or its first `cap` characters and a note saying how much was cut."""
    if len(text) <= cap:
        return text
    return f"{text[:cap]}... [{len(text) - cap} more characters not kept]"


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if v == v else ""
    return v


def write_json(path: Path, data: Any) -> None:
    """Atomic replace, so a reader (or a crash) never sees half a file; secrets scrubbed."""
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps(redact.scrub_obj(data), indent=2, allow_nan=False)
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)


class ResultsWriter:
    """Inline event subscriber: one CSV row and one JSONL line per step, flushed at once."""

    def __init__(self, run_dir: Path, *, debug_json: bool | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.run_dir / "results.csv"
        self.jsonl_path = self.run_dir / "responses.jsonl"
        self.summary_path = self.run_dir / "summary.json"
        if debug_json is None:
            debug_json = os.environ.get("HALOSPEC_DEBUG_JSON", "") == "1"
        self.debug_json = debug_json
        new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        self._csv_file = self.csv_path.open("a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        if new:
            self._csv.writerow(COLUMNS)
            self._csv_file.flush()
        self._jsonl = self.jsonl_path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self.rows_written = 0

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, StepResult):
            self.write_row(ev)
        elif isinstance(ev, ModeFinished):
            self.write_summary(ev.run_summary)
        elif isinstance(ev, RunFinished):
            self.write_summary(ev.summary)

    def write_row(self, ev: StepResult) -> None:
        row = ev.row
        rec: dict[str, Any] = {
            "global_step": row.global_step,
            "step": row.step,
            "mode": row.mode,
            "prompt_id": row.prompt_id,
            "draft_length": row.draft_length,
            "success": bool(row.success),
            "text": redact.scrub(capped(ev.text)),
            "timings": {
                "prompt_n": row.prompt_n,
                "prompt_ms": row.prompt_ms,
                "predicted_n": row.predicted_n,
                "predicted_ms": row.predicted_ms,
                "draft_n": row.draft_n,
                "draft_n_accepted": row.draft_n_accepted,
            },
            "error": redact.scrub(row.error),
        }
        if row.ttft_ms is not None:
            rec["stream"] = {
                "ttft_ms": row.ttft_ms,
                "itl_p50_ms": row.itl_p50_ms,
                "itl_p95_ms": row.itl_p95_ms,
            }
        if self.debug_json and ev.reply_json is not None:
            reply = json.dumps(redact.scrub_obj(ev.reply_json), default=str)
            rec["reply"] = (
                json.loads(reply) if len(reply) <= REPLY_CAP else capped(reply, REPLY_CAP)
            )
        cells = [_cell(getattr(row, c)) for c in COLUMNS]
        cells[_ERROR] = redact.scrub(row.error)  # the one column holding a server's words
        with self._lock:
            if self._csv_file.closed:
                return
            self._csv.writerow(cells)
            self._csv_file.flush()
            self._jsonl.write(json.dumps(rec, default=str) + "\n")
            self._jsonl.flush()
            self.rows_written += 1

    def write_summary(self, summary: dict[str, Any]) -> None:
        with self._lock:
            write_json(self.summary_path, summary)

    def close(self) -> None:
        with self._lock:
            for f in (self._csv_file, self._jsonl):
                if not f.closed:
                    f.close()


# --- reading back ---------------------------------------------------------------------------


INT_LIMIT = 2**53  # the largest whole number a float (and so a CSV number) holds exactly


def _parse(field: dataclasses.Field[Any], raw: str) -> Any:
    if raw == "":
        return field.default if field.default is not dataclasses.MISSING else None
    tp = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    if tp.startswith(("int", "float")):
        try:
            x = float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {raw[:40]!r}") from None
        if not math.isfinite(x):
            raise ValueError(f"expected a finite number, got {raw[:40]!r}")
        if tp.startswith("int"):
            if x != int(x):
                raise ValueError(f"expected a whole number, got {raw[:40]!r}")
            if abs(x) > INT_LIMIT:  # a counter no run reaches; numpy's int64 arrays overflow
                raise ValueError(f"expected a whole number below 2^53, got {raw[:40]!r}")
            return int(x)
        return x
    return raw


class ResultsFileError(ValueError):
    """A results file `report` cannot read; the message is one line: the file (and line),
    what is wrong, what was expected."""


REQUIRED = {f.name for f in dataclasses.fields(StepRow) if f.default is dataclasses.MISSING}


RESULTS_LIMIT = 1 << 30  # bytes of a results CSV report reads (a million rows is ~300 MB)


def _text_of(path: Path) -> str:
    """The file as text, or ResultsFileError saying why it is not a CSV we can read."""
    try:
        text = textfile.read_text(path, what="a results CSV", limit=RESULTS_LIMIT)
    except textfile.TextFileError as e:
        raise ResultsFileError(str(e)) from None
    if not text.strip():
        raise ResultsFileError(f"{path}: empty file (expected a results CSV with a header line)")
    return text


def load_table(csv_path: Path) -> tuple[list[StepRow], list[int]]:
    """The rows of our results.csv or an original HaloSpec CSV (its eight columns at least),
    and the line each came from. Whatever cannot be read is refused in one line: not text,
    a header that is not ours, an unknown or repeated column, a row with too few or too many
    values, a value that is not a (finite) number where one is expected."""
    path = Path(csv_path)
    fields = {f.name: f for f in dataclasses.fields(StepRow)}
    text = _text_of(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, [])
        if header[:8] != HALOSPEC_COLUMNS:
            raise ResultsFileError(
                f"{path}: expected a results CSV starting with {','.join(HALOSPEC_COLUMNS)}"
            )
        for name in header[8:]:
            if name not in fields:
                raise ResultsFileError(
                    f"{path}: unknown column {name[:40]!r} (expected the columns of "
                    "results.csv, docs/results.md)"
                )
        if len(set(header)) != len(header):
            raise ResultsFileError(f"{path}: a column named twice in the header")
        rows: list[StepRow] = []
        lines: list[int] = []
        for rec in reader:
            line = reader.line_num
            if not rec or rec == [""]:
                continue  # a blank line
            if len(rec) != len(header):
                raise ResultsFileError(
                    f"{path}:{line}: expected {len(header)} values (one per column), got {len(rec)}"
                )
            kw: dict[str, Any] = {}
            for name, raw in zip(header, rec, strict=True):
                try:
                    kw[name] = _parse(fields[name], raw)
                except ValueError as e:
                    raise ResultsFileError(f"{path}:{line}: {name}: {e}") from None
                if kw[name] is None and name in REQUIRED:
                    raise ResultsFileError(f"{path}:{line}: {name}: expected a value, got none")
            rows.append(StepRow(**kw))
            lines.append(line)
    except csv.Error as e:
        raise ResultsFileError(f"{path}:{reader.line_num}: not CSV ({e})") from None
    return rows, lines


def load_rows(csv_path: Path) -> list[StepRow]:
    """Rows from our results.csv or an original HaloSpec CSV (see load_table)."""
    return load_table(csv_path)[0]


def run_starts(rows: Sequence[StepRow]) -> list[int]:
    """Indices of the rows where a run starts: the first, and every row whose global_step
    does not go up (HaloSpec appends each run to the same CSV, global_step restarting at 1).
    Such a restart is a new run, never a change of draft length within one."""
    return [i for i, r in enumerate(rows) if i == 0 or r.global_step <= rows[i - 1].global_step]


def split_runs(rows: Sequence[StepRow]) -> list[list[StepRow]]:
    """The rows of each run a CSV holds, in file order (see run_starts)."""
    starts = run_starts(rows)
    return [list(rows[a:b]) for a, b in zip(starts, [*starts[1:], len(rows)], strict=True)]


def summarize_rows(
    rows: Sequence[StepRow],
    profile: Profile | None = None,
    extra: dict[str, Any] | None = None,
    verdicts: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The summary.json structure for a set of rows, modes in their order of appearance, with
    the recommendation computed as the runner computes it. `verdicts` (mode -> draft_control,
    from a summary.json) win over verdicts judged again from the rows' own counters."""
    prof = profile or Profile()
    weights = prof.score if profile else ScoreSettings()
    window = weights.convergence_window
    order: list[str] = []
    by_mode: dict[str, list[StepRow]] = {}
    for r in rows:
        if r.mode not in by_mode:
            order.append(r.mode)
            by_mode[r.mode] = []
        by_mode[r.mode].append(r)
    modes = [summarize_mode(m, by_mode[m], weights, window) for m in order]
    not_ranked: dict[str, str] = {}
    for m in modes:
        rs = by_mode[m["mode"]]
        dc = (verdicts or {}).get(m["mode"])
        if dc is None:
            channel = next((r.draft_channel for r in rs if r.draft_channel), "") or "request"
            dc = verdict.mode_verdict(rs, channel)
        m["draft_control"] = dc
        m["contaminated_steps"] = sum(1 for r in rs if r.contaminated)
        why = ranking_refusal(dc, weights.winner_among)
        if why:
            not_ranked[m["mode"]] = why
    rounds = {r.round for r in rows}
    rec = recommend_from_rows(by_mode, profile=prof, not_ranked=not_ranked, paired=len(rounds) > 1)
    backend = (extra or {}).get("backend") or (profile.backend.kind if profile else "")
    rec_dict = with_apply(rec.as_dict(), str(backend or "llamacpp"), prof)
    attach_standings(modes, rec_dict)
    summary: dict[str, Any] = {
        "modes": modes,
        "winner": rec_dict.get("mode"),
        "recommendation": rec_dict,
        "metric": prof.run.metric,
        "rounds": max(rounds) if rounds else 0,
        "profile": profile.name if profile else None,
        "backend": profile.backend.kind if profile else None,
    }
    if extra:
        summary.update(extra)
    return summary


def find_csv(path: Path) -> Path:
    p = Path(path)
    if p.is_dir():
        for name in ("results.csv", "results_phase0.csv"):
            if (p / name).exists():
                return p / name
        raise ResultsFileError(f"{p}: no results.csv in this folder")
    if not p.exists():
        raise ResultsFileError(
            f"{p}: no such file or folder (expected a run folder or a results CSV)"
        )
    return p


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _summary_shaped(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """A summary.json's content if it has the shape every reader relies on (a list of modes,
    each a table with its name, and a recommendation table), else None: a damaged or
    hand-edited file is not trusted, the summary is computed from the rows instead."""
    if data is None:
        return None
    modes, rec = data.get("modes"), data.get("recommendation")
    ok = (
        isinstance(modes, list)
        and all(isinstance(m, dict) and isinstance(m.get("mode"), str) for m in modes)
        and isinstance(rec, dict)
    )
    return data if ok else None


def read_run(
    path: Path, run: int | None = None, *, use_saved: bool = True
) -> tuple[list[StepRow], dict[str, Any]]:
    """A run folder or CSV read back: its rows and its summary. The run's own summary.json
    is the answer when it covers every mode in the rows (so `report`, `report --text` and the
    summary screen say what the run said); otherwise (a cut-short run, a CSV alone, the
    original HaloSpec's CSV) the summary is computed from the rows the way the runner does,
    keeping the verdicts summary.json has.

    A CSV holding several runs (global_step restarting) is never merged: `run` (1-based)
    picks one, and without it ResultsFileError says how many there are. `use_saved=False`
    ignores summary.json (for a reader that could not use it)."""
    from halospec_tui import profile as profile_mod

    p = Path(path)
    csv_path = find_csv(p)
    rows, lines = load_table(csv_path)
    starts = run_starts(rows)
    if run is not None and not 1 <= run <= max(1, len(starts)):
        raise ResultsFileError(
            f"{csv_path}: --run: expected 1 to {max(1, len(starts))} (the runs it holds), got {run}"
        )
    if len(starts) > 1:
        if run is None:
            where = ", ".join(str(lines[i]) for i in starts[1:4]) + (
                ", ..." if len(starts) > 4 else ""
            )
            raise ResultsFileError(
                f"{csv_path}: holds {len(starts)} runs (global_step restarts on "
                f"line{'s' if len(starts) > 2 else ''} {where}); choose one with "
                f"--run 1 to {len(starts)}"
            )
        rows = split_runs(rows)[run - 1]
    folder = p if p.is_dir() else csv_path.parent
    prof = None
    if (folder / "profile.toml").exists():
        try:
            prof = profile_mod.load(folder / "profile.toml")
        except profile_mod.ProfileError:
            prof = None
    row_modes = list(dict.fromkeys(r.mode for r in rows))
    saved = _summary_shaped(_read_json(folder / "summary.json")) if use_saved else None
    if len(starts) > 1:
        saved = None  # which of the runs it describes is unknown
    covered = {m.get("mode") for m in (saved or {}).get("modes", []) if isinstance(m, dict)}
    if saved is not None and set(row_modes) <= covered and "recommendation" in saved:
        return rows, saved
    verdicts = {
        m["mode"]: m["draft_control"]
        for m in (saved or {}).get("modes", [])
        if isinstance(m.get("draft_control"), dict)
    }
    extra = {
        key: saved[key]
        for key in ("backend", "draft_channel", "model", "profile", "cancelled", "order")
        if saved and isinstance(saved.get(key), str | bool) and saved.get(key)
    }
    return rows, summarize_rows(rows, prof, extra, verdicts)


def export(run_dir: Path, dest: Path, profile: Profile | None = None) -> tuple[Path, Path]:
    """Copy the rows so far and a summary of them into `dest` (a folder); safe mid-run."""
    src = find_csv(run_dir)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    csv_out = dest / "results.csv"
    if src.resolve() != csv_out.resolve():
        shutil.copyfile(src, csv_out)
    rows = load_rows(csv_out)
    existing = Path(run_dir) / "summary.json" if Path(run_dir).is_dir() else None
    extra: dict[str, Any] = {}
    if existing and existing.exists():
        try:
            prev = json.loads(existing.read_text(encoding="utf-8"))
            extra = {k: v for k, v in prev.items() if k not in ("modes", "winner")}
            verdicts = {m["mode"]: m.get("draft_control") for m in prev.get("modes", [])}
        except (OSError, ValueError):
            verdicts = {}
    else:
        verdicts = {}
    extra = {k: v for k, v in extra.items() if k not in ("recommendation", "metric", "rounds")}
    summary = summarize_rows(rows, profile, extra, {m: v for m, v in verdicts.items() if v})
    summary["partial"] = True
    json_out = dest / "summary.json"
    write_json(json_out, summary)
    return csv_out, json_out
