"""Compare finished runs: each mode side by side, the difference between runs with its interval.

`halospec-tui report A B [C ...]` reads every run back (core/results.read_run: its own
summary.json, or the summary recomputed from results.csv) and compares every later run with the
first, the baseline, mode by mode.

**Unpaired.** Two runs are two moments: round r of run A and round r of run B share nothing
(not the machine's state, not necessarily the prompt), so the pairing by round that the
recommendation uses inside a run (core/confidence.py) does not hold between runs. Each run's
clean steps are resampled on their own (an unpaired bootstrap) and the difference is the ratio
B/A − 1 of the figure of merit, with the expanded-percentile interval and p-value of
core/confidence.compare. With many modes compared at once, a difference is called real only
when Holm's adjustment across the modes of that pair of runs says so, as the recommendation
does across modes.

**Same rows as the recommendation.** The rows compared are those the run's recommendation
compared (core/recommendation.clean_for_recommendation: no contaminated step, no scheduled
load phase, no abandoned step), so a mode's value here is the value in that run's
summary.json, and B/A − 1 is the ratio of the two summaries' numbers.

**Conditions.** A difference only means something when the runs met the same conditions; the
comparison lists what differed: the backend, the model, the draft channel, the figure of merit,
any profile setting (profile.toml of each run folder), contaminated or load steps, a run cut
short, a mode missing from a run. It says so; it does not refuse to compare.

Everything here is a pure function of the runs read and a seed; the text, Markdown, HTML and
terminal views (core/compare_report.py, tui/screens/compare.py) all show this one dict.
"""

from __future__ import annotations

import math
import string
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from halospec_tui.core import confidence as cf
from halospec_tui.core.events import StepRow
from halospec_tui.core.recommendation import LEVEL, clean_for_recommendation, mode_k
from halospec_tui.core.results import find_csv, read_run

REPLICATES = 2000
# profile keys that never change what a run measures: not reported as a difference
IGNORED_SETTINGS = frozenset({"name", "description", "run.out_dir"})
MAX_SETTING_NOTES = 12


@dataclass
class RunInput:
    """One run read back: its rows, its summary and (when its folder has one) its profile."""

    label: str  # A, B, C ... as the command line gave them
    source: str
    rows: list[StepRow]
    summary: dict[str, Any]
    settings: dict[str, Any] | None = None  # profile.toml, flattened to section.key
    by_mode: dict[str, list[StepRow]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.by_mode:
            for r in self.rows:
                self.by_mode.setdefault(r.mode, []).append(r)


def labels(n: int) -> list[str]:
    """A, B, ..., Z, then R27, R28 ... (nobody compares 27 runs, but it must not fail)."""
    return [string.ascii_uppercase[i] if i < 26 else f"R{i + 1}" for i in range(n)]


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def load_run(path: str | Path, label: str) -> RunInput:
    """A run folder or results CSV read back (raises results.ResultsFileError, one line)."""
    p = Path(path)
    rows, summary = read_run(p)
    folder = p if p.is_dir() else find_csv(p).parent
    settings = None
    toml = folder / "profile.toml"
    if toml.exists():
        try:
            settings = flatten(tomllib.loads(toml.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            settings = None
    return RunInput(label, str(path), rows, summary, settings)


def mode_data(run: RunInput, mode: str) -> cf.ModeData:
    """The mode's rows the recommendation compared, named run:mode for the bootstrap."""
    rows = [r for r in run.by_mode.get(mode, []) if clean_for_recommendation(r)]
    return cf.ModeData.of(
        f"{run.label}:{mode}",
        [(r.round, bool(r.success), int(r.tokens), float(r.latency_ms)) for r in rows],
    )


def _metric_of(run: RunInput) -> str:
    s = run.summary
    m = s.get("metric") or (s.get("recommendation") or {}).get("metric") or "tokens_per_s"
    return m if m in cf.METRICS else "tokens_per_s"


def _score_weights(run: RunInput) -> cf.ScoreWeights:
    st = run.settings or {}
    return cf.ScoreWeights(
        float(st.get("score.avg", 1.0)),
        float(st.get("score.p95", 0.5)),
        float(st.get("score.stddev", 0.2)),
    )


def _num(x: Any, nd: int = 4) -> float | None:
    return round(float(x), nd) if isinstance(x, int | float) and math.isfinite(x) else None


def mode_entry(run: RunInput, mode: dict[str, Any], metric: str) -> dict[str, Any]:
    """One mode of one run as the comparison shows it: the run's own estimate (summary.json),
    its label in that run, its draft-length verdict, its steps."""
    name = str(mode.get("mode"))
    conf = mode.get("confidence") or {}
    est = conf.get("estimate") or {}
    value = est.get("value")
    if value is None or _metric_of(run) != metric:  # not in the summary: from the rows
        value = cf.point(metric, mode_data(run, name), _score_weights(run))
        est = {}
    rows = run.by_mode.get(name, [])
    return {
        "value": _num(value),
        "lo": _num(est.get("lo")),
        "hi": _num(est.get("hi")),
        "label": conf.get("label", "not_ranked"),
        "why": conf.get("why", ""),
        "verdict": (mode.get("draft_control") or {}).get("verdict", "-"),
        "steps": int(mode.get("steps") or len(rows)),
        "clean_steps": sum(1 for r in rows if clean_for_recommendation(r)),
        "contaminated_steps": sum(1 for r in rows if r.contaminated),
        "load_steps": sum(1 for r in rows if r.phase == "load"),
        "k": mode_k(name),
        "tokens_per_s": _num(mode.get("tokens_per_s"), 3),
        "avg_ms": _num(mode.get("avg_ms"), 3),
        "p95_ms": _num(mode.get("p95_ms"), 3),
    }


def run_entry(run: RunInput, metric: str) -> dict[str, Any]:
    s = run.summary
    rec = s.get("recommendation") or {}
    modes = {str(m.get("mode")): mode_entry(run, m, metric) for m in s.get("modes") or []}
    return {
        "label": run.label,
        "source": run.source,
        "profile": s.get("profile"),
        "backend": s.get("backend"),
        "draft_channel": s.get("draft_channel"),
        "model": s.get("model"),
        "metric": _metric_of(run),
        "order": s.get("order"),
        "steps": len(run.rows),
        "contaminated_steps": sum(1 for r in run.rows if r.contaminated),
        "cancelled": bool(s.get("cancelled")),
        "partial": bool(s.get("partial")),
        "recommended": rec.get("mode"),
        "status": rec.get("status"),
        "decided": rec.get("decided"),
        "reason": rec.get("reason", ""),
        "tied": list(rec.get("tied") or []),
        "modes": modes,
    }


def difference(
    metric: str,
    base: RunInput,
    other: RunInput,
    mode: str,
    *,
    replicates: int = REPLICATES,
    seed: int = 0,
    margin: float = 0.02,
) -> dict[str, Any] | None:
    """other/base − 1 for one mode, unpaired, with its interval (None when either run has
    too few successful steps of the mode to resample)."""
    a, b = mode_data(base, mode), mode_data(other, mode)
    if not a.ok.any() or not b.ok.any():
        return None
    reps = cf.draw([a, b], paired=False, replicates=replicates, seed=seed)
    c = cf.compare(metric, b, a, reps, level=LEVEL, sw=_score_weights(base))
    if c is None:
        return None
    return {
        "mode": mode,
        "run": other.label,
        "baseline": base.label,
        "diff": round(c.diff, 5),
        "lo": round(c.lo, 5),
        "hi": round(c.hi, 5),
        "level": LEVEL,
        "p_value": round(c.p_value, 5),
        "equivalent": -margin <= c.lo and c.hi <= margin,
        "steps": [int(a.ok.sum()), int(b.ok.sum())],
    }


def judge(diffs: list[dict[str, Any]], higher_is_better: bool, alpha: float) -> None:
    """Holm across the modes of one pair of runs; each difference gets its verdict:
    better | worse (the run against the baseline, held after Holm), same (inside the
    margin), better? | worse? (its own 95 % interval excludes 0 but Holm across the modes does
    not hold it: with six modes compared one such is expected by chance a quarter of the
    time) or unclear."""
    held = cf.holm({d["mode"]: d["p_value"] for d in diffs}, alpha)
    for d in diffs:
        real, level = held[d["mode"]]
        d["holm_level"] = round(level, 5)
        up = (d["diff"] > 0) == higher_is_better
        if real:
            d["verdict"] = "better" if up else "worse"
        elif d["equivalent"]:
            d["verdict"] = "same"
        elif d["lo"] > 0 or d["hi"] < 0:
            d["verdict"] = "better?" if up else "worse?"
        else:
            d["verdict"] = "unclear"


def conditions(runs: Sequence[RunInput], entries: Sequence[dict[str, Any]]) -> list[str]:
    """What differed between the runs, beyond the draft length: each a line."""
    notes: list[str] = []

    def differs(key: str, what: str) -> None:
        values = [e.get(key) for e in entries]
        if len({str(v) for v in values}) > 1:
            notes.append(
                f"{what} differs: "
                + ", ".join(
                    f"{e['label']} {v or 'unknown'}" for e, v in zip(entries, values, strict=True)
                )
            )

    differs("backend", "backend")
    differs("model", "model")
    differs("draft_channel", "draft channel")
    differs("metric", "figure of merit")
    differs("order", "mode order")
    known = [r for r in runs if r.settings is not None]
    for r in runs:
        if r.settings is None:
            notes.append(f"{r.label} has no profile.toml: its settings are unknown")
    if len(known) > 1:
        keys = sorted({k for r in known for k in r.settings or {}} - IGNORED_SETTINGS)
        changed = [k for k in keys if len({repr((r.settings or {}).get(k)) for r in known}) > 1]
        for k in changed[:MAX_SETTING_NOTES]:
            vals = ", ".join(f"{r.label} {_show((r.settings or {}).get(k))}" for r in known)
            notes.append(f"setting {k} differs: {vals}")
        if len(changed) > MAX_SETTING_NOTES:
            notes.append(f"... and {len(changed) - MAX_SETTING_NOTES} more settings differ")
    for e in entries:
        if e["contaminated_steps"]:
            notes.append(
                f"{e['label']}: {e['contaminated_steps']} contaminated steps (foreign CPU or "
                "unscheduled load), left out"
            )
        loaded = [m for m, v in e["modes"].items() if v["load_steps"]]
        if loaded:
            notes.append(
                f"{e['label']}: scheduled CPU load in {', '.join(loaded)} (those steps are "
                "left out)"
            )
        if e["cancelled"]:
            notes.append(f"{e['label']} was cancelled before the end")
        if e["partial"]:
            notes.append(f"{e['label']} is a partial export")
    notes += draft_notes(entries)
    all_modes = [set(e["modes"]) for e in entries]
    for e, ms in zip(entries, all_modes, strict=True):
        missing = sorted(set().union(*all_modes) - ms)
        if missing:
            notes.append(f"{e['label']} has no {', '.join(missing)}")
    return notes


def draft_notes(entries: Sequence[dict[str, Any]]) -> list[str]:
    """Whether each mode's draft length reached the server, where the runs disagree or it did
    not: a mode whose k was not applied measured something else than k."""
    notes = []
    modes = list(dict.fromkeys(m for e in entries for m in e["modes"]))
    for mode in modes:
        seen = [(e["label"], e["modes"][mode]["verdict"]) for e in entries if mode in e["modes"]]
        verdicts = {v for _, v in seen}
        if len(verdicts) > 1 or "not_applied" in verdicts:
            notes.append(
                f"draft length of {mode}: "
                + ", ".join(f"{lab} {v.replace('_', ' ')}" for lab, v in seen)
            )
    return notes


def _show(v: Any) -> str:
    if v is None:
        return "(unset)"
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def compare_runs(
    runs: Sequence[RunInput], *, replicates: int = REPLICATES, seed: int = 0
) -> dict[str, Any]:
    """Every run side by side, every later run against the first, mode by mode."""
    if not runs:
        raise ValueError("compare_runs: expected at least one run")
    base = runs[0]
    metric = _metric_of(base)
    m = cf.METRICS[metric]
    margin = float((base.summary.get("recommendation") or {}).get("margin") or 0.02)
    entries = [run_entry(r, metric) for r in runs]
    order = list(dict.fromkeys(mode for e in entries for mode in e["modes"]))
    diffs: list[dict[str, Any]] = []
    for other in runs[1:]:
        pair = []
        for mode in order:
            if mode in base.by_mode and mode in other.by_mode:
                d = difference(
                    metric, base, other, mode, replicates=replicates, seed=seed, margin=margin
                )
                if d is not None:
                    pair.append(d)
        judge(pair, m.higher_is_better, 1.0 - LEVEL)
        diffs += pair
    changes = [f"{e['label']} recommends {e['recommended'] or 'nothing'}" for e in entries]
    return {
        "metric": metric,
        "metric_label": m.label,
        "unit": m.unit,
        "higher_is_better": m.higher_is_better,
        "level": LEVEL,
        "margin": margin,
        "baseline": base.label,
        "method": (
            f"{m.label} of each run's clean steps; run vs {base.label} as a ratio − 1 with a "
            f"{LEVEL * 100:.0f} % unpaired bootstrap interval ({replicates} replicates; runs "
            "are different moments, so steps are not paired), Holm across modes"
        ),
        "runs": entries,
        "modes": order,
        "differences": diffs,
        "conditions": conditions(runs, entries),
        "verdicts": changes,
        "same_answer": len({e["recommended"] for e in entries}) == 1,
        "chart": chart_points(entries),
    }


def chart_points(entries: Sequence[dict[str, Any]]) -> dict[str, list[list[float | None]]]:
    """Per run, its fixed modes by k: [k, value, lo, hi] (the figure of merit by k)."""
    out: dict[str, list[list[float | None]]] = {}
    for e in entries:
        pts = sorted(
            [float(v["k"]), v["value"], v["lo"], v["hi"]]
            for v in e["modes"].values()
            if v["k"] is not None and v["value"] is not None
        )
        out[e["label"]] = pts
    return out


def read_and_compare(
    paths: Sequence[str | Path], *, replicates: int = REPLICATES, seed: int = 0
) -> dict[str, Any]:
    """The runs at `paths` compared (results.ResultsFileError for an unreadable one)."""
    runs = [load_run(p, lab) for p, lab in zip(paths, labels(len(paths)), strict=True)]
    return compare_runs(runs, replicates=replicates, seed=seed)
