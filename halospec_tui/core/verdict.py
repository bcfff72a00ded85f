"""Did the draft length reach the server? Verdicts from the server's own counters.

Per mode, one of:

* `applied`: the server's counters follow the requested k. Per reply, the observed draft
  length is draft_n / verify steps, with verify steps = predicted_n - draft_n_accepted - 1
  (every step emits its accepted tokens plus one; the first token comes from the prompt
  pass). A server that honours k never drafts more than k per step, and drafts less only in
  the last step of a reply (cut so as not to pass max_tokens). Servers without per-reply
  counters (vLLM) are judged on their /metrics deltas: draft tokens per draft.
* `not_applied`: the counters do not follow k; or asking for more draft tokens did not get
  more; or modes asking for different k saw the same drafting (`cross_check`: a server that
  ignores the knob looks "right" for the one k it runs at); or the server reports timings but
  did not speculate at all; or the channel's own confirmation failed (a Lemonade reload whose
  launch command does not carry k).
* `unknown`: the server reports no draft counters at all, per reply or in /metrics.

The evidence (numbers, the channel's proof, a one-line note) goes to summary.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median
from typing import Any

from halospec_tui import modes as modes_mod
from halospec_tui.core.events import StepRow

# Over: a server that honours k never drafts more than k per verify step; the slack covers
# servers that count the first token differently. Under: the last draft of a reply is cut by
# max_tokens (bounded exactly when the reply's verify steps are known), and drafts may stop
# early (n-gram misses, p_min): UNDER_FRACTION of the bound, less a little.
OVER_TOL = 0.25
OVER_REL = 0.1
UNDER_FRACTION = 0.8
UNDER_FRACTION_BLIND = 0.55  # when a row's verify steps are unknown


def over_limit(requested: float) -> float:
    return requested + max(OVER_TOL, OVER_REL * requested)


def under_limit(requested: float, steps: float | None = None) -> float:
    if steps:
        # all but the last verify step drafted k
        return UNDER_FRACTION * requested * (steps - 1) / steps - OVER_TOL
    return UNDER_FRACTION_BLIND * requested - 0.5


def follows(requested: float, observed: float, steps: float | None = None) -> bool:
    return under_limit(requested, steps) <= observed <= over_limit(requested)


def row_steps(r: StepRow) -> int | None:
    if r.predicted_n is None or r.draft_n_accepted is None:
        return None
    s = r.predicted_n - r.draft_n_accepted - 1
    return s if s > 0 else None


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


def _channel_problem(channel_evidence: dict[str, Any] | None) -> str | None:
    """A failure the channel itself reported (reload not confirmed, a server drafting over k,
    or one server drafting over the k a request asked for)."""
    ev = channel_evidence or {}
    if ev.get("confirmed") is False:
        return str(ev.get("note") or "the channel did not confirm the draft length")
    for key, what in (
        ("per_server", "the server for k={k}"),
        ("per_k_metrics", "requests for k={k}"),
    ):
        for k, d in (ev.get(key) or {}).items():
            kpd = d.get("k_per_draft") if isinstance(d, dict) else None
            try:
                k_req = float(k)
            except (TypeError, ValueError):
                continue
            if kpd is not None and kpd > over_limit(k_req):
                return f"{what.format(k=k)}: {kpd:g} draft tokens per draft (/metrics)"
    return None


def _per_draft_follows(channel_evidence: dict[str, Any] | None, ks: set[int]) -> bool:
    """The server's /metrics, per requested k (request channel): does every k this mode asked
    for show draft tokens per draft that follow it? Drafters that do not draft on every verify
    step (an n-gram type finds no match) dilute the per-reply ratio; per draft they do not."""
    per_k = (channel_evidence or {}).get("per_k_metrics") or {}
    for k in ks:
        d = per_k.get(str(k))
        if not isinstance(d, dict) or not d.get("drafts") or d.get("k_per_draft") is None:
            return False
        per_reply = d["drafts"] / max(d.get("requests") or 1.0, 1.0)
        if not follows(k, d["k_per_draft"], per_reply):
            return False
    return bool(ks)


def _metrics_verdict(
    ok: Sequence[StepRow], channel: str, md: dict[str, float], evidence: dict[str, Any]
) -> str:
    """The verdict from /metrics deltas alone (servers without per-reply counters)."""
    drafts = md.get("drafts") or 0.0
    ks = sorted({r.draft_length for r in ok})
    if drafts > 0:
        k_m = md.get("draft_tokens", 0.0) / drafts
        evidence["observed_k_metrics"] = round(k_m, 3)
        if len(ks) != 1:
            if channel == "none":
                evidence["note"] = (
                    f"k varied ({ks[0]}..{ks[-1]}) but the server's draft length is fixed "
                    f"(/metrics: {k_m:.2f} draft tokens per draft)"
                )
                return "not_applied"
            evidence["note"] = (
                "k varied and the server reports /metrics only: not provable per step"
            )
            return "unknown"
        # each reply cuts at most its last draft: drafts per reply play the role of steps
        if follows(ks[0], k_m, drafts / len(ok) if ok else None):  # type: ignore[arg-type]
            return "applied"
        evidence["note"] = f"/metrics: {k_m:.2f} draft tokens per draft, requested k {ks[0]}"
        return "not_applied"
    if "drafts" in md and (md.get("tokens_predicted") or 0) > 0:
        evidence["note"] = (
            "/metrics: the server generated tokens but drafted none (speculation off)"
        )
        return "not_applied"
    return "unknown"


def mode_verdict(
    rows: Sequence[StepRow],
    channel: str,
    metrics_delta: dict[str, float] | None = None,
    channel_evidence: dict[str, Any] | None = None,
) -> dict[str, Any]:
    ok = [r for r in rows if r.success]
    with_counts = [r for r in ok if r.observed_k is not None]
    evidence: dict[str, Any] = {
        "steps": len(ok),
        "steps_with_counters": len(with_counts),
        "metrics_delta": metrics_delta,
    }
    if channel_evidence:
        evidence["channel"] = channel_evidence
    fixed_note = "the draft length is fixed by the server; the harness cannot set it"
    if not with_counts:
        md = metrics_delta or {}
        timed = [r for r in ok if r.predicted_n is not None and r.draft_n is None]
        if ok and len(timed) == len(ok):
            verdict = "not_applied"
            evidence["note"] = (
                "the server reports timings but no draft_n: it did not speculate "
                "(start it with --spec-type and a draft model or an n-gram type)"
            )
        else:
            verdict = _metrics_verdict(ok, channel, md, evidence)
        problem = _channel_problem(channel_evidence)
        if problem and verdict == "applied":
            verdict, evidence["note"] = "not_applied", problem
        if verdict == "unknown":
            evidence["note"] = evidence.get("note") or "the server reported no draft counters"
        if channel == "none":
            evidence["note"] = (
                f"{fixed_note}; {evidence['note']}" if evidence.get("note") else fixed_note
            )
        return {"channel": channel, "verdict": verdict, "evidence": evidence}

    matches = sum(
        follows(r.draft_length, r.observed_k, row_steps(r))  # type: ignore[arg-type]
        for r in with_counts
    )
    over = sum(r.observed_k > over_limit(r.draft_length) for r in with_counts)  # type: ignore[operator]
    evidence["requested_k_median"] = median(r.draft_length for r in with_counts)
    evidence["observed_k_median"] = round(median(r.observed_k for r in with_counts), 3)  # type: ignore[type-var]
    evidence["rows_following_k"] = matches
    evidence["rows_over_k"] = over
    steps = [s for s in (row_steps(r) for r in with_counts) if s]
    if steps:
        evidence["verify_steps_median"] = median(steps)
    md = metrics_delta or {}
    if md.get("drafts"):
        evidence["observed_k_metrics"] = round(md.get("draft_tokens", 0.0) / md["drafts"], 3)
    rises = rises_with_k(with_counts)
    evidence["observed_k_rises_with_k"] = rises
    verdict = (
        "applied" if matches >= 0.8 * len(with_counts) and rises is not False else "not_applied"
    )
    if (
        verdict == "not_applied"
        and over == 0
        and rises is not False
        and _per_draft_follows(channel_evidence, {r.draft_length for r in with_counts})
    ):
        verdict = "applied"
        evidence["note"] = (
            "not every verify step drafted (the replies' ratio is lower), but no reply drafted "
            "more than asked and the server's /metrics per requested k follow k per draft"
        )
    if verdict == "not_applied":
        evidence["note"] = (
            f"observed k {evidence['observed_k_median']} does not follow requested k "
            f"{evidence['requested_k_median']}"
            + (f"; {over} of {len(with_counts)} replies drafted more than asked" if over else "")
            + ("; asking for more draft tokens did not get more" if rises is False else "")
        )
    problem = _channel_problem(channel_evidence)
    if problem and verdict == "applied":
        verdict, evidence["note"] = "not_applied", problem
    if channel == "none":
        evidence["note"] = (
            f"{fixed_note}; {evidence['note']}"
            if evidence.get("note")
            else f"{fixed_note}; its counters match this mode's k"
        )
    return {"channel": channel, "verdict": verdict, "evidence": evidence}


def _observed(m: dict[str, Any]) -> float | None:
    ev = m.get("draft_control", {}).get("evidence", {})
    v = ev.get("observed_k_median")
    return v if v is not None else ev.get("observed_k_metrics")


def _discriminates(lo: dict[str, Any], hi: dict[str, Any]) -> bool:
    """Could an honoured k tell these two fixed modes apart? Under honoured k the mode with
    the larger k drafts at least k_hi (S-1)/S per step (S: its verify steps per reply), so
    when that exceeds k_lo, equal counters mean the knob did not turn. Short replies at large
    k (fixed_7 vs fixed_8 at 24 tokens) can look alike legitimately: those pairs are skipped."""
    k_lo, k_hi = int(lo["mode"][6:]), int(hi["mode"][6:])
    steps = hi["draft_control"]["evidence"].get("verify_steps_median")
    if not steps:
        return k_hi > k_lo
    return k_hi * (steps - 1) / steps > k_lo


def identical_pairs(modes: list[dict[str, Any]]) -> list[tuple[str, str, float]]:
    """Pairs of fixed modes that asked for different k but drafted the same (within 10 %),
    where an honoured k would have made them differ: (mode_a, mode_b, observed k)."""
    fixed = [m for m in modes if modes_mod.is_fixed(m["mode"]) and _observed(m) is not None]
    fixed.sort(key=lambda m: modes_mod.fixed_k(m["mode"]))
    out: list[tuple[str, str, float]] = []
    for i, a in enumerate(fixed):
        for b in fixed[i + 1 :]:
            oa, ob = _observed(a), _observed(b)
            assert oa is not None and ob is not None
            if abs(oa - ob) <= 0.1 * max(oa, ob, 1e-9) and _discriminates(a, b):
                out.append((a["mode"], b["mode"], oa))
    return out


def cross_check(modes: list[dict[str, Any]]) -> list[str]:
    """Mark fixed modes not_applied when different requested k give the same observed k
    (per reply, or from /metrics for servers without per-reply counters).

    Returns the names of modes it changed. Works on summary dicts with a `draft_control`."""
    by_name = {m["mode"]: m for m in modes}
    changed: list[str] = []
    for a, b, obs in identical_pairs(modes):
        for m, other in ((by_name[a], b), (by_name[b], a)):
            dc = m["draft_control"]
            dc["evidence"].setdefault("same_counters_as", [])
            if other not in dc["evidence"]["same_counters_as"]:
                dc["evidence"]["same_counters_as"].append(other)
            if dc["verdict"] != "not_applied":
                dc["verdict"] = "not_applied"
                dc["evidence"]["note"] = (
                    f"{m['mode']} and {other} asked for different draft lengths "
                    f"but the server drafted the same (~{obs:g} per step)"
                )
                changed.append(m["mode"])
    return changed


def describe(draft_control: dict[str, Any] | None) -> str:
    """One line for a header, a table cell or a log: 'k applied (obs 3.60)', 'k NOT APPLIED ...'."""
    if not draft_control:
        return "k not judged yet"
    v = draft_control.get("verdict", "unknown")
    ev = draft_control.get("evidence") or {}
    obs = ev.get("observed_k_median", ev.get("observed_k_metrics"))
    tail = f" (observed k {obs:g})" if isinstance(obs, int | float) else ""
    if v == "applied":
        return f"k applied{tail}"
    if v == "not_applied":
        return f"k NOT APPLIED{tail}: {ev.get('note', '')}".rstrip(": ")
    return f"k unknown: {ev.get('note', 'no draft counters')}"
