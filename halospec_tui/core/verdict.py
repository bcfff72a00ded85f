"""Did the draft length reach the server? Verdicts from the server's own counters.

Per mode: `applied` when the observed draft length (draft_n / verify steps, per reply) follows
the requested k; `not_applied` when it does not, or when modes asking for different k see the
same observed k (a server that ignores the knob looks "right" for the one k it runs at);
`unknown` when the server reports no counters at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median
from typing import Any

from halospec_tui.core.events import StepRow

# A server never drafts more than asked; it drafts less near the end of a reply (the last
# drafts are cut so as not to pass max_tokens), the more so the shorter the reply.
OVER_TOL = 0.25
UNDER_FRACTION = 0.55


def follows(requested: float, observed: float) -> bool:
    return observed <= requested + OVER_TOL and observed >= UNDER_FRACTION * requested - 0.5


def rises_with_k(rows: Sequence[StepRow]) -> bool | None:
    """Within one mode: do rows that asked for more draft tokens get more? None if k never varied."""
    by_k: dict[int, list[float]] = {}
    for r in rows:
        if r.observed_k is not None:
            by_k.setdefault(r.draft_length, []).append(r.observed_k)
    if len(by_k) < 2:
        return None
    lo, hi = min(by_k), max(by_k)
    return median(by_k[hi]) > median(by_k[lo])


def mode_verdict(
    rows: Sequence[StepRow], channel: str, metrics_delta: dict[str, float] | None = None
) -> dict[str, Any]:
    ok = [r for r in rows if r.success]
    with_counts = [r for r in ok if r.observed_k is not None]
    evidence: dict[str, Any] = {
        "steps": len(ok),
        "steps_with_counters": len(with_counts),
        "metrics_delta": metrics_delta,
    }
    if channel == "none":
        evidence["note"] = "the draft length is fixed by the server; the harness cannot set it"
    if not with_counts:
        md = metrics_delta or {}
        if md.get("drafts"):
            evidence["observed_k_metrics"] = md.get("draft_tokens", 0.0) / md["drafts"]
        evidence["note"] = evidence.get("note") or "the server reported no draft counters"
        return {"channel": channel, "verdict": "unknown", "evidence": evidence}
    matches = sum(follows(r.draft_length, r.observed_k) for r in with_counts)  # type: ignore[arg-type]
    evidence["requested_k_median"] = median(r.draft_length for r in with_counts)
    evidence["observed_k_median"] = round(median(r.observed_k for r in with_counts), 3)  # type: ignore[type-var]
    evidence["rows_following_k"] = matches
    if (md := metrics_delta) and md.get("drafts"):
        evidence["observed_k_metrics"] = round(md.get("draft_tokens", 0.0) / md["drafts"], 3)
    rises = rises_with_k(with_counts)
    evidence["observed_k_rises_with_k"] = rises
    verdict = (
        "applied" if matches >= 0.8 * len(with_counts) and rises is not False else "not_applied"
    )
    if channel == "none":
        verdict = "not_applied"
    elif verdict == "not_applied":
        evidence["note"] = (
            f"observed k {evidence['observed_k_median']} does not follow requested k "
            f"{evidence['requested_k_median']}"
            + ("; asking for more draft tokens did not get more" if rises is False else "")
        )
    return {"channel": channel, "verdict": verdict, "evidence": evidence}


def cross_check(modes: list[dict[str, Any]]) -> list[str]:
    """Mark fixed modes not_applied when different requested k give the same observed k.

    Returns the names of modes it changed. Works on summary dicts with a `draft_control`."""
    fixed = [
        m
        for m in modes
        if m["mode"].startswith("fixed_")
        and m.get("draft_control", {}).get("evidence", {}).get("observed_k_median") is not None
    ]
    changed: list[str] = []
    for i, a in enumerate(fixed):
        for b in fixed[i + 1 :]:
            ka, kb = int(a["mode"][6:]), int(b["mode"][6:])
            oa = a["draft_control"]["evidence"]["observed_k_median"]
            ob = b["draft_control"]["evidence"]["observed_k_median"]
            if ka != kb and abs(oa - ob) <= 0.1 * max(oa, ob, 1e-9):
                for m, other in ((a, b), (b, a)):
                    dc = m["draft_control"]
                    if dc["verdict"] != "not_applied":
                        dc["verdict"] = "not_applied"
                        dc["evidence"]["note"] = (
                            f"{m['mode']} and {other['mode']} asked for different draft lengths "
                            f"but the server drafted the same (~{oa:g})"
                        )
                        changed.append(m["mode"])
    return changed
