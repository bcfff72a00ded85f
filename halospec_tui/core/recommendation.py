"""The answer a user takes away: which k, how sure, tied with what, and the setting to apply.

From the clean rows of every mode (contaminated steps already left out) and each mode's
draft-length verdict:

1. Each eligible mode (its k provably applied, with successful steps) gets the figure of merit
   with a 95 % bootstrap interval (core/confidence.py).
2. The **leader** is the eligible mode with the best point estimate. Every other eligible mode is
   compared with it on the same rounds (paired when the run interleaved) and labelled `worse`
   when Holm's adjustment says the difference is real, else `tied`; the leader is `best`.
3. The **tie set** is the leader and the modes tied with it; the recommendation is the leader,
   and its reason says against what and how sure ("k = 4: 6 % more tokens/s than k = 3, 95 %
   CI 2..10 %"), or that k 4 and k 5 are within noise.
4. `decided` says whether more rounds could change the answer: every other contender is worse,
   or within the indifference margin of the leader (practically equal), so `run.until =
   "decided"` can stop; `eliminate` names the modes racing may drop from later rounds.

Everything here is a pure function of its inputs and a seed: the same rows give the same
recommendation in summary.json, the monitor, `report` and the headless summary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from halospec_tui import modes
from halospec_tui.core import confidence as cf
from halospec_tui.core.events import StepRow
from halospec_tui.profile import Profile

LEVEL = 0.95
MIN_CLEAN_STEPS = 3  # successful clean steps a mode needs before it is ranked


@dataclass
class Standing:
    """One mode's place in the comparison."""

    mode: str
    label: str  # best | tied | worse | not_ranked
    why: str = ""  # why not ranked
    estimate: cf.Interval | None = None
    vs_leader: cf.Comparison | None = None
    equivalent: bool = False  # vs_leader inside ±margin: practically equal
    steps: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "label": self.label,
            **({"why": self.why} if self.why else {}),
            "estimate": self.estimate.as_dict() if self.estimate else None,
            "vs_leader": self.vs_leader.as_dict() if self.vs_leader else None,
            "equivalent": self.equivalent,
            "steps": self.steps,
        }


@dataclass
class Recommendation:
    mode: str | None
    k: int | None
    tied: list[str]
    metric: str
    paired: bool
    reason: str
    status: str  # separated | tied | single | none
    decided: bool
    excluded_steps: int = 0
    ci: dict[str, Any] | None = None
    versus: dict[str, Any] | None = None  # the closest contender: what is being decided
    standings: list[Standing] = field(default_factory=list)
    eliminate: list[str] = field(default_factory=list)
    margin: float = 0.02
    apply: dict[str, Any] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)  # mode -> draft-length verdict
    leader: str | None = None  # the best point estimate (the recommendation is picked from
    # the tie set around it: see pick_from_tie)

    def label_of(self, mode: str) -> str:
        for s in self.standings:
            if s.mode == mode:
                return s.label
        return "not_ranked"

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "k": self.k,
            "leader": self.leader,
            "tied": list(self.tied),
            "metric": self.metric,
            "ci": self.ci,
            "excluded_steps": self.excluded_steps,
            "reason": self.reason,
            "apply": self.apply,
            "status": self.status,
            "decided": self.decided,
            "paired": self.paired,
            "margin": self.margin,
            "versus": self.versus,
            "standings": [
                {
                    **s.as_dict(),
                    **({"verdict": self.verdicts[s.mode]} if s.mode in self.verdicts else {}),
                }
                for s in self.standings
            ],
        }


def mode_k(mode: str) -> int | None:
    try:
        kind, k = modes.parse(mode)
    except ValueError:
        return None
    return k if kind == modes.FIXED else None


def mode_name(mode: str) -> str:
    """How a mode reads in a sentence: 'k = 4' for fixed_4, the mode's name otherwise."""
    k = mode_k(mode)
    return f"k = {k}" if k is not None else mode


def standings_line(rec: dict[str, Any]) -> str:
    """What is being decided, in a line: "leading k = 4, tied with k = 5 (k = 4 vs k = 5: 78 %
    sure)"."""
    mode = rec.get("mode")
    if not mode:
        return str(rec.get("reason", ""))
    tied = [t for t in rec.get("tied") or [] if t != mode]
    text = f"leading {mode_name(mode)}"
    if tied:
        text += f", tied with {', '.join(mode_name(t) for t in tied)}"
    vs = rec.get("versus")
    if vs:
        text += f" ({mode_name(vs['leader'])} vs {mode_name(vs['mode'])}: {vs['sure'] * 100:.0f} % sure)"
    if rec.get("decided"):
        text += " · decided"
    return text


def _pct(x: float) -> str:
    return f"{x * 100:+.0f} %" if abs(x) >= 0.01 else f"{x * 100:+.1f} %"


def _range(lo: float, hi: float) -> str:
    def f(x: float) -> str:
        return f"{x * 100:.0f}" if abs(x) >= 0.01 or x == 0 else f"{x * 100:.1f}"

    return f"{f(lo)}..{f(hi)} %"


def recommend(
    rows: Mapping[str, Sequence[tuple[int, bool, int, float]]],
    *,
    not_ranked: Mapping[str, str] | None = None,
    metric: str = "tokens_per_s",
    paired: bool = True,
    margin: float = 0.02,
    seed: int = 0,
    replicates: int = 2000,
    weights: cf.ScoreWeights | None = None,
    excluded_steps: int = 0,
    eliminate_level: float = 0.01,
) -> Recommendation:
    """rows: mode -> (round, success, tokens, latency_ms) of its clean steps, in mode order.
    not_ranked: mode -> why it may not be recommended (draft length not applied, ...)."""
    if metric not in cf.METRICS:
        raise ValueError(f"unknown metric {metric!r} (expected one of {', '.join(cf.METRICS)})")
    m = cf.METRICS[metric]
    sw = weights or cf.ScoreWeights()
    why_not = dict(not_ranked or {})
    data = {mode: cf.ModeData.of(mode, rs) for mode, rs in rows.items()}
    for mode, d in data.items():
        if mode not in why_not and not d.ok.any():
            why_not[mode] = "no successful step" if d.n else "no clean step"
    eligible = [mode for mode in data if mode not in why_not]
    reps = cf.draw([data[x] for x in data], paired=paired, replicates=replicates, seed=seed)

    standings: dict[str, Standing] = {}
    points: dict[str, float] = {}
    for mode, d in data.items():
        st = Standing(mode, "not_ranked", why_not.get(mode, ""), steps=d.n)
        st.estimate = cf.estimate(metric, d, reps, LEVEL, sw)
        if st.estimate is not None and mode in eligible:
            points[mode] = st.estimate.value
        standings[mode] = st
    ordered = [standings[x] for x in data]
    if not points:
        reason = _nothing_reason(why_not)
        return Recommendation(
            None, None, [], metric, paired, reason, "none", False, excluded_steps,
            standings=ordered, margin=margin,
        )  # fmt: skip

    def better(a: float, b: float) -> bool:
        return a > b if m.higher_is_better else a < b

    basis, shared_rounds = _leader_basis(metric, data, points, paired, sw)
    leader = None
    for mode in eligible:
        if mode in basis and (leader is None or better(basis[mode], basis[leader])):
            leader = mode
    assert leader is not None
    standings[leader].label = "best"
    others = [x for x in eligible if x != leader and x in points]

    # which modes may still be the best: the max-test over every rival, Holm across modes
    # (core/confidence.best_set_p_values); each comparison with the leader is shown with its
    # plain 95 % interval
    best_p = cf.best_set_p_values(metric, [data[x] for x in eligible], reps, sw)
    # the family is every eligible mode's hypothesis, the leader's included: for two equal
    # modes "the slower one is worse" is a two-sided question, not a one-sided one
    tested = dict(best_p)
    verdicts = cf.holm(tested, 1.0 - LEVEL)
    strict = cf.holm(tested, eliminate_level)
    eliminate: list[str] = []
    for x in others:
        st = standings[x]
        if x not in verdicts:
            st.label = "tied"
            continue
        rejected = verdicts[x][0]
        c = cf.compare(metric, data[x], data[leader], reps, level=LEVEL, sw=sw)
        st.vs_leader = c
        st.label = "worse" if rejected else "tied"
        if c is not None:
            st.equivalent = -margin <= c.lo and c.hi <= margin
        if strict[x][0]:
            eliminate.append(x)

    tied = [leader] + [x for x in others if standings[x].label == "tied"]
    contenders = [x for x in tied if x != leader]
    decided = all(standings[x].equivalent for x in contenders)
    status = "single" if not others else ("separated" if not contenders else "tied")

    # the closest contender: the one the leader is least sure to beat
    closest = None
    for x in others:
        c = standings[x].vs_leader
        if c is not None and (
            closest is None
            or c.prob_leader_better < standings[closest].vs_leader.prob_leader_better  # type: ignore[union-attr]
        ):
            closest = x
    versus = None
    if closest is not None:
        c = standings[closest].vs_leader
        assert c is not None
        versus = {
            "leader": leader,
            "mode": closest,
            "sure": round(c.prob_leader_better, 4),
            "diff": round(c.diff, 5),
            "lo": round(c.lo, 5),
            "hi": round(c.hi, 5),
            "level": round(c.level, 5),
        }
    est = standings[leader].estimate
    ci = {
        "metric": est.as_dict(3) if est else None,
        **({"versus": versus} if versus else {}),
    }
    reason = _reason(
        m, leader, standings, tied, closest, status, paired, margin, excluded_steps, len(tested),
        shared_rounds,
    )  # fmt: skip
    pick, why_pick = pick_from_tie(tied, leader, standings, m.higher_is_better)
    if pick != leader:
        reason += f"; recommending {mode_name(pick)}: {why_pick}"
    return Recommendation(
        mode=pick,
        leader=leader,
        k=mode_k(pick),
        tied=tied,
        metric=metric,
        paired=paired,
        reason=reason,
        status=status,
        decided=decided,
        excluded_steps=excluded_steps,
        ci=ci,
        versus=versus,
        standings=ordered,
        eliminate=eliminate,
        margin=margin,
    )


def _leader_basis(
    metric: str,
    data: Mapping[str, cf.ModeData],
    own: dict[str, float],
    paired: bool,
    sw: cf.ScoreWeights,
) -> tuple[dict[str, float], int | None]:
    """The point estimates the leader is chosen on, and how many shared rounds they cover
    (None: each mode's own estimate). Paired by round, on the rounds every
    ranked mode ran (at least 3): a mode with more steps than the others (the default
    profile's adaptive mode, 15 against 10) otherwise led on rounds it ran alone, under other
    conditions, while every paired comparison on the shared rounds put a fixed k ahead of it.
    Unpaired, or with fewer shared rounds, each mode's own estimate (`own`: the ranked
    modes' point estimates)."""
    ranked = list(own)
    if not paired or len(ranked) < 2:
        return own, None
    rounds = [set(data[x].rounds[data[x].ok].tolist()) for x in ranked]
    common = set.intersection(*rounds)
    if len(common) < 3 or all(len(r) == len(common) for r in rounds):
        return own, None
    shared = {
        x: v for x in ranked if (v := cf.point(metric, data[x].subset(common), sw)) is not None
    }
    return (shared, len(common)) if shared else (own, None)


PICK_WITHIN = 0.01  # pick_from_tie: how far below the fitted peak a smaller k may be


def pick_from_tie(
    tied: Sequence[str],
    leader: str,
    standings: Mapping[str, Standing],
    higher_is_better: bool = True,
) -> tuple[str, str]:
    """The one mode to recommend from the tie set, and why when it is not the leader.

    Among modes the data cannot separate, the point estimates' order is noise: naming the
    leader would flip from run to run. So:

    * a fixed k tied with an adaptive leader is preferred: it does as well within noise and
      needs nothing but a server flag (an adaptive controller needs k per request);
    * among several tied fixed k, the pick is read off the curve through them: tokens/s is
      smooth and single-peaked in k (docs/controllers.md), so a quadratic in log k fitted to
      the log metric of the tied k and their neighbours (weighted by each one's precision)
      borrows strength from every neighbour, where each point alone is noisy; the pick is
      the smallest tied k within PICK_WITHIN (1 %) of the curve's peak.
    """
    fixed = sorted((k, x) for x in tied if (k := mode_k(x)) is not None)
    if not fixed:
        return leader, ""
    if len(fixed) == 1:
        k, x = fixed[0]
        if x == leader:
            return leader, ""
        return (
            x,
            "a fixed k that the adaptive leader does not beat, and it needs no per-request channel",
        )
    ks = {k for k, _ in fixed}
    near = {k for k in range(min(ks) - 1, max(ks) + 2)}
    pts = []
    for x, st in standings.items():
        k = mode_k(x)
        est = st.estimate
        if k is None or k not in near or st.label == "not_ranked" or est is None or est.value <= 0:
            continue
        spread = (
            (math.log(est.hi) - math.log(est.lo)) / 3.92
            if est.lo and est.hi and est.lo > 0 and math.isfinite(est.lo) and math.isfinite(est.hi)
            else 0.0
        )
        y = math.log(est.value) if higher_is_better else -math.log(est.value)
        pts.append((k, y, 1.0 / max(spread, 1e-3) ** 2))
    fit = _quadratic_fit(pts)
    if fit is None:
        best = (
            leader
            if mode_k(leader) is not None
            else max(fixed, key=lambda f: _value(standings, f[1], higher_is_better))[1]
        )
        return best, "" if best == leader else "a fixed k tied with the adaptive leader"
    lo, hi = min(ks), max(ks)
    peak = min(max(_peak(fit), lo), hi)
    top = _curve(fit, peak)
    # the smallest tied k the curve puts within PICK_WITHIN of its peak: near the peak the
    # curve is flat, so "the k nearest the peak" flips between neighbours from run to run
    # (measured: k 4, 5, 5, 4, 4 on five runs of the default profile, 2026-12-06), while the
    # smallest k within 1 % of it does not (4 in all five); drafting less also costs the
    # server less when it gets busy, where the best k moves down (the one-standard-error
    # rule of model selection, with 1 % for the error)
    k_pick, x_pick = next(
        ((k, x) for k, x in fixed if _curve(fit, k) >= top - math.log1p(PICK_WITHIN)),
        min(fixed, key=lambda f: (abs(f[0] - peak), f[1] != leader, f[0])),
    )
    if x_pick == leader:
        return leader, ""
    return x_pick, (
        f"the smallest k within {PICK_WITHIN * 100:.0f} % of the peak of the curve fitted "
        f"through k {min(k for k, _, _ in pts)}..{max(k for k, _, _ in pts)} (peak at "
        f"k ≈ {peak:.1f}); between tied modes the measured order is noise"
    )


def _value(standings: Mapping[str, Standing], mode: str, higher: bool) -> float:
    est = standings[mode].estimate
    v = est.value if est is not None else 0.0
    return v if higher else -v


def _quadratic_fit(pts: list[tuple[int, float, float]]) -> tuple[float, float, float] | None:
    """(a, b, c) of the weighted quadratic y = a·(log k)² + b·log k + c through (k, y,
    weight); None when fewer than three k or the fit is not concave. In log k because
    tokens/s rises steeply below its best k and falls slowly above it: on Leviathan's curves
    the log-k quadratic's peak lands on the best integer k where a plain quadratic in k
    overshoots (α 0.72, c 0.1: 4.2 against 4.5, best k 4)."""
    if len({k for k, _, _ in pts}) < 3:
        return None
    import numpy as np

    k = np.log(np.array([p[0] for p in pts], float))
    y = np.array([p[1] for p in pts], float)
    w = np.sqrt(np.array([p[2] for p in pts], float))
    a = np.stack([k**2, k, np.ones_like(k)], axis=1) * w[:, None]
    coef, *_ = np.linalg.lstsq(a, y * w, rcond=None)
    if not coef[0] < 0:
        return None
    return float(coef[0]), float(coef[1]), float(coef[2])


def _peak(fit: tuple[float, float, float]) -> float:
    """The k where the fitted (concave) curve peaks."""
    return math.exp(-fit[1] / (2 * fit[0]))


def _curve(fit: tuple[float, float, float], k: float) -> float:
    a, b, c = fit
    return a * math.log(k) ** 2 + b * math.log(k) + c


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _leader_gain(c: cf.Comparison) -> tuple[float, float, float]:
    """leader/mode − 1 with its interval, from the comparison's mode/leader − 1."""

    def inv(x: float) -> float:
        return 1.0 / (1.0 + x) - 1.0 if x > -1.0 else math.inf

    return inv(c.diff), inv(c.hi), inv(c.lo)


def _nothing_reason(why_not: Mapping[str, str]) -> str:
    if not why_not:
        return "no mode measured"
    kinds: dict[str, list[str]] = {}
    for mode, why in why_not.items():
        kinds.setdefault(why, []).append(mode)
    parts = [f"{why} ({', '.join(ms)})" for why, ms in kinds.items()]
    return "no mode can be recommended: " + "; ".join(parts)


def _reason(
    m: cf.Metric,
    leader: str,
    standings: Mapping[str, Standing],
    tied: list[str],
    closest: str | None,
    status: str,
    paired: bool,
    margin: float,
    excluded: int,
    comparisons: int = 1,
    shared_rounds: int | None = None,
) -> str:
    name = mode_name(leader)
    direction = ("more", "less") if m.higher_is_better else ("lower", "higher")
    how = "" if paired else " (modes ran one after another: unpaired comparison)"
    tail = f"; {excluded} contaminated steps left out" if excluded else ""
    if status == "single":
        return f"{name}: the only mode ranked{how}{tail}"
    if status == "separated" and closest is not None:
        c = standings[closest].vs_leader
        assert c is not None
        gain, lo, hi = _leader_gain(c)
        word = direction[0] if (gain >= 0) == m.higher_is_better else direction[1]
        if not m.higher_is_better:
            gain, lo, hi = -gain, -hi, -lo
        return (
            f"{name}: {abs(gain) * 100:.0f} % {word} {m.label} than {mode_name(closest)} "
            f"(the next best), {c.level * 100:.0f} % CI {_range(lo, hi)}{how}{tail}"
        )
    rest = [x for x in tied if x != leader]
    names = _and([mode_name(x) for x in [leader, *rest]])
    spans = []
    apart_alone = False  # a tied mode whose own 95 % interval excludes 0 (see below)
    for x in rest:
        c = standings[x].vs_leader
        if c is not None:
            star = "*" if c.lo > 0 or c.hi < 0 else ""
            apart_alone = apart_alone or bool(star)
            spans.append(f"{mode_name(x)} {_range(c.lo, c.hi)}{star}")
    within = all(standings[x].equivalent for x in rest)
    what = (
        f"within ±{margin * 100:.0f} % of each other (practically equal)"
        if within
        else "tied: the data do not separate them"
    )
    # each interval is the plain one of that comparison; the tie is decided for all the
    # comparisons at once (Holm), so an interval can exclude 0 while its mode stays tied:
    # said, so that the reader does not see a contradiction
    star_note = (
        f"; * apart on its own interval, not once the {comparisons} comparisons are "
        "corrected for (Holm)"
        if apart_alone
        else ""
    )
    return (
        f"{names} are {what}"
        + (f" ({'; '.join(spans)} {m.label} vs {name}, 95 % CI)" if spans else "")
        + f"; {name} had the {'most' if m.higher_is_better else 'best'} {m.label}"
        + (f" on the {shared_rounds} rounds every mode ran" if shared_rounds else "")
        + f"{star_note}{how}{tail}"
    )


# --- from rows: the runner's, or results.csv's read back (the same answer) ---------------------


def clean_for_recommendation(row: StepRow) -> bool:
    """Rows the recommendation compares: not contaminated, not in a scheduled load phase,
    not the step a stop abandoned (its request never finished: no measurement at all)."""
    return not row.contaminated and row.phase != "load" and not row.interrupted


def ranking_refusal(draft_control: dict[str, Any] | None, among: str) -> str:
    """Why a mode may not be recommended ("" when it may): its k was not shown to apply."""
    if among == "all" or draft_control is None:
        return ""
    v = draft_control.get("verdict")
    if v == "applied":
        return ""
    if v == "not_applied":
        return "draft length not applied"
    return "draft length not proven (no draft counters)"


def recommend_from_rows(
    rows_by_mode: dict[str, list[StepRow]],
    *,
    profile: Profile,
    not_ranked: dict[str, str],
    paired: bool,
    replicates: int = 2000,
) -> Recommendation:
    """The recommendation from rows (the runner's, or results.csv's read back: same answer)."""
    p = profile
    clean: dict[str, list[tuple[int, bool, int, float]]] = {}
    excluded = 0
    refused = dict(not_ranked)
    for mode, rows in rows_by_mode.items():
        keep = [r for r in rows if clean_for_recommendation(r)]
        dirty = sum(1 for r in rows if r.contaminated)
        excluded += dirty
        clean[mode] = [(r.round, bool(r.success), int(r.tokens), float(r.latency_ms)) for r in keep]
        good = sum(1 for r in keep if r.success)
        if good < MIN_CLEAN_STEPS and mode not in refused:
            # an estimate from one or two steps is no estimate: say so rather than rank it
            refused[mode] = (
                f"too few clean steps ({good} of {len(rows)}"
                + (f"; {dirty} contaminated" if dirty else "")
                + ")"
            )
    return recommend(
        clean,
        not_ranked=refused,
        metric=p.run.metric,
        paired=paired,
        margin=p.run.margin,
        seed=p.run.seed,
        replicates=replicates,
        weights=cf.ScoreWeights(p.score.avg, p.score.p95, p.score.stddev),
        excluded_steps=excluded,
    )


def with_apply(rec: dict[str, Any], backend_kind: str, profile: Profile) -> dict[str, Any]:
    """The recommendation with the settings that apply it on the user's server."""
    from halospec_tui.backends.apply import apply_settings

    rec = dict(rec)
    rec["apply"] = apply_settings(rec.get("mode"), backend_kind, profile)
    return rec


def attach_standings(modes: list[dict[str, Any]], rec: dict[str, Any]) -> None:
    """Each mode summary gets its label, interval and comparison with the leader."""
    by_mode = {s["mode"]: s for s in rec.get("standings") or []}
    for m in modes:
        st = by_mode.get(m.get("mode"))
        if st is not None:
            m["confidence"] = {k: v for k, v in st.items() if k != "mode"}
