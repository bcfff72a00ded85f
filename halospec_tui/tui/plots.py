"""The summary screen's plots as plotext draw functions; no Textual here.

Each `*_plot` returns `(title, caption, draw)` where `draw(figure, width, height)` fills a
cleared plotext figure (widgets/charts.render_plot sizes and renders it). Data come from the
run summary (per-mode statistics) and from the adaptive modes' rows, reduced to the columns
plotted and thinned to a few thousand points so a 100,000-step run still plots at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from halospec_tui.core.evaluation.text import set_integer_ticks
from halospec_tui.modes import FIXED_PREFIX, is_fixed

PHASE_ORDER = ("warmup", "steady", "load", "recovery")
PHASE_COLORS = {"warmup": "yellow", "steady": "green", "load": "red", "recovery": "cyan"}
# distinct symbols too, so phases stay apart without colour (NO_COLOR)
PHASE_MARKERS = {"warmup": "dot", "steady": "dot", "load": "x", "recovery": "+"}
MAX_POINTS = 4000

Draw = Callable[[Any, int, int], None]


@dataclass
class ModeSeries:
    """One mode's per-step columns, in step order."""

    mode: str
    steps: list[int] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    latency: list[float | None] = field(default_factory=list)  # None for failed steps
    k: list[int] = field(default_factory=list)


def series_from_rows(rows: Iterable[Any]) -> dict[str, ModeSeries]:
    """Per non-fixed mode, the columns the plots need (fixed modes plot from the summary)."""
    out: dict[str, ModeSeries] = {}
    for r in rows:
        if is_fixed(r.mode):
            continue
        s = out.get(r.mode)
        if s is None:
            s = out[r.mode] = ModeSeries(r.mode)
        s.steps.append(int(r.step))
        s.phases.append(r.phase or "steady")
        s.latency.append(float(r.latency_ms) if r.success else None)
        s.k.append(int(r.draft_length))
    return out


def _stride(n: int, limit: int = MAX_POINTS) -> int:
    return max(1, -(-n // limit))


def _marker(phase: str) -> Any:
    import plotext as plt

    return plt.marker(
        PHASE_MARKERS.get(phase, "dot"), plt.pixel(foreground=PHASE_COLORS.get(phase, "white"))
    )


def _phases_in(series: ModeSeries) -> list[str]:
    seen = set(series.phases)
    return [p for p in PHASE_ORDER if p in seen] + sorted(seen - set(PHASE_ORDER))


def fixed_latency_plot(modes: Sequence[dict[str, Any]]) -> tuple[str, str, Draw] | None:
    fixed = [m for m in modes if is_fixed(str(m.get("mode"))) and m.get("avg_ms") is not None]
    if not fixed:
        return None
    labels = [str(m["mode"]).replace(FIXED_PREFIX, "k=") for m in fixed]
    avg = [float(m["avg_ms"]) for m in fixed]
    p95 = [float(m.get("p95_ms") or m["avg_ms"]) for m in fixed]

    def draw(f: Any, w: int, h: int) -> None:
        import plotext as plt

        b = f.bar(
            labels,
            [avg, p95],
            marker=[
                plt.marker("full", plt.pixel(foreground="cyan")),
                plt.marker("brick", plt.pixel(foreground="magenta")),
            ],
        )
        f.draw(b)

    return (
        "fixed modes: average and p95 latency (ms)",
        "[cyan]█ avg[/]  [magenta]▇ p95[/]  per fixed draft length k",
        draw,
    )


def score_plot(modes: Sequence[dict[str, Any]], winner: str | None) -> tuple[str, str, Draw] | None:
    scored = [m for m in modes if m.get("score") is not None]
    if not scored:
        return None
    labels = [str(m["mode"]).replace(FIXED_PREFIX, "k=") for m in scored]
    scores = [float(m["score"]) for m in scored]

    def draw(f: Any, w: int, h: int) -> None:
        f.draw(f.bar(labels, scores))

    best = f" · winner [bold]{winner}[/]" if winner else " · no winner"
    return (
        "score by mode (avg + 0.5·p95 + 0.2·stddev, lower is better)",
        f"lower is better{best}",
        draw,
    )


def by_step_plot(series: ModeSeries, what: str) -> tuple[str, str, Draw] | None:
    """`what` is latency or k: one signal per phase, each in its colour."""
    if not series.steps:
        return None
    stride = _stride(len(series.steps))
    phases = _phases_in(series)
    pts: dict[str, tuple[list[int], list[float]]] = {p: ([], []) for p in phases}
    values: Sequence[float | int | None] = series.latency if what == "latency" else series.k
    for i in range(0, len(series.steps), stride):
        v = values[i]
        if v is None:
            continue
        xs, ys = pts[series.phases[i]]
        xs.append(series.steps[i])
        ys.append(float(v))
    if not any(xs for xs, _ in pts.values()):
        return None

    def draw(f: Any, w: int, h: int) -> None:
        for p in phases:
            xs, ys = pts[p]
            if xs:
                f.draw(f.signal(xs, ys, marker=_marker(p)))
        f.legend(active=False)
        all_x = [x for xs, _ in pts.values() for x in xs]
        set_integer_ticks(f, "x", all_x, max(2, w // 10))  # step numbers
        if what == "k":  # a draft length is whole: 1, 2, 3, never 2.7
            set_integer_ticks(f, "y", [y for _, ys in pts.values() for y in ys], max(2, h // 2))

    name = "latency (ms)" if what == "latency" else "draft_length"
    thin = f" · every {stride}th step" if stride > 1 else ""
    return (f"{series.mode}: {name} by step", phase_caption(phases) + thin, draw)


def phase_box_plot(series: ModeSeries) -> tuple[str, str, Draw] | None:
    groups: dict[str, list[float]] = {}
    for ph, v in zip(series.phases, series.latency, strict=False):
        if v is not None:
            groups.setdefault(ph, []).append(v)
    phases = [p for p in _phases_in(series) if groups.get(p)]
    if not phases:
        return None
    data = [groups[p] for p in phases]

    def draw(f: Any, w: int, h: int) -> None:
        f.draw(f.box(phases, data))

    caption = "  ".join(f"{p}: n={len(groups[p])} median {_median(groups[p]):,.1f}" for p in phases)
    return (
        f"{series.mode}: latency by phase (ms, box = quartiles, whiskers = min/max)",
        caption,
        draw,
    )


def phase_caption(phases: Sequence[str]) -> str:
    sym = {"dot": "•", "x": "x", "+": "+"}
    return "  ".join(
        f"[{PHASE_COLORS.get(p, 'white')}]{sym[PHASE_MARKERS.get(p, 'dot')]} {p}[/]" for p in phases
    )


def _median(v: list[float]) -> float:
    s = sorted(v)
    return s[(len(s) - 1) // 2]


def all_plots(
    summary: dict[str, Any], series: dict[str, ModeSeries]
) -> list[tuple[str, str, Draw]]:
    modes = summary.get("modes") or []
    plots = [fixed_latency_plot(modes), score_plot(modes, summary.get("winner"))]
    for s in series.values():
        plots += [by_step_plot(s, "latency"), by_step_plot(s, "k"), phase_box_plot(s)]
    return [p for p in plots if p is not None]
