"""The evaluation as text: per-segment tables and plotext plots of each controller's k.

`format_evaluation` prints what `metrics.evaluation_for_run` (or the median of several runs)
computed; `k_tracking_plots` draws each controller's k by step over the segments' oracle k
(evaluate writes them to run-N/k_tracking.txt).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from halospec_tui.core.tables import text_table
from halospec_tui.modes import is_fixed

SEGMENT_HEADER = [
    "mode",
    "steps",
    "tok/s",
    "settled",
    "p50 ms",
    "p95 ms",
    "k",
    "/oracle",
    "/best fixed",
]
SEGMENT_PRIORITY = (0, 6, 1, 5, 8, 7, 4, 2, 3)
"""Which segment columns stay when the width is short (0 longest): tok/s and the ratios."""
OVERALL_HEADER = [
    "mode",
    "tok/s",
    "+overhead",
    "ctl ms",
    "p50 ms",
    "p95 ms",
    "k mean",
    "/best fixed",
    "/oracle",
]
OVERALL_PRIORITY = (0, 1, 5, 8, 7, 6, 4, 2, 3)
LOAD_PHASES = ("load", "recovery")


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _wrap(text: str, width: int | None) -> list[str]:
    """A prose line wrapped at `width` (continuation lines indented), never cut."""
    if width is None or len(text) <= width:
        return [text]
    return textwrap.wrap(text, width=max(width, 20), subsequent_indent="  ", break_on_hyphens=False)


def _ran(stats: dict[str, Any]) -> bool:
    """A mode ran in a segment: it has steps there (or, in the medians of several runs that
    carry no step count, a value)."""
    if "steps" in stats:
        return bool(stats["steps"])
    return any(v is not None for v in stats.values())


def _seg_name(seg: dict[str, Any], segments: list[dict[str, Any]]) -> str:
    """`all` is the name of a segment with no load phase; beside load and recovery segments it
    is the steps without load, so it reads `no load` there."""
    name = str(seg.get("name", "?"))
    if seg.get("load_phase") is None and any(x.get("load_phase") for x in segments):
        return "no load" if name == "all" else f"{name} (no load)"
    return name


def _overlapping(segments: list[dict[str, Any]]) -> bool:
    spans = sorted((s["first_step"], s["last_step"]) for s in segments)
    return any(b[0] <= a[1] for a, b in zip(spans, spans[1:], strict=False))


def format_evaluation(
    ev: dict[str, Any], *, fixed_detail: bool = True, width: int | None = None
) -> str:
    """The evaluation as text: per segment, then the whole run; with `width`, tables keep the
    columns that fit (SEGMENT_PRIORITY, OVERALL_PRIORITY) and sentences wrap.

    Only the modes that ran in a segment are listed; when segments overlap (each mode met the
    load at its own steps) the step ranges are not shown as if shared; a segment where some
    mode ran under load and the fixed modes did not says the comparison is across conditions.
    """
    lines: list[str] = []
    runs = ev.get("runs")
    if runs:
        lines += _wrap(
            f"median of {runs} runs (seeds {', '.join(map(str, ev.get('seeds', [])))})", width
        )
    overall = ev.get("overall") or {}
    bf = (overall.get("best_fixed") or {}).get("mode")
    segments = list(ev.get("segments", []))
    overlap = _overlapping(segments)
    names = {str(seg.get("name")): _seg_name(seg, segments) for seg in segments}
    if overlap:
        lines.append("")
        lines += _wrap(
            "the load met each mode at its own steps, so segment step ranges differ by mode; "
            "the 'steps' column counts each mode's steps in the segment",
            width,
        )
    under_load: dict[str, int] = {}
    for seg in segments:
        if seg.get("load_phase") in LOAD_PHASES:
            for m, st in (seg.get("modes") or {}).items():
                under_load[m] = under_load.get(m, 0) + int(st.get("steps") or 0)
    for seg in segments:
        o = seg.get("oracle") or {}
        modes = seg.get("modes", {})
        ran = [m for m in modes if _ran(modes[m])]
        shown = [m for m in ran if fixed_detail or not is_fixed(m) or m in (bf, o.get("mode"))]
        where = (
            f"steps {seg['first_step']}..{seg['last_step']}, settled from "
            f"{seg['settled_from_step']}"
            if not overlap
            else f"{len(ran)} mode{'s' if len(ran) != 1 else ''} ran in it"
        )
        oracle = (
            f"oracle {o['mode']} {_fmt(o.get('tokens_per_s'), '.1f')} tok/s"
            if o.get("mode")
            else "no fixed mode ran in it: nothing to compare with"
        )
        lines.append("")
        lines += _wrap(f"segment {_seg_name(seg, segments)}: {where}; {oracle}", width)
        body = []
        for m in shown:
            st = modes[m]
            mark = " (oracle)" if m == o.get("mode") else (" (best fixed)" if m == bf else "")
            body.append(
                [
                    m + mark,
                    _fmt(None if st.get("steps") is None else round(st["steps"]), "d"),
                    _fmt(st.get("tokens_per_s"), ".1f"),
                    _fmt(st.get("tokens_per_s_settled"), ".1f"),
                    _fmt(st.get("p50_ms"), ".1f"),
                    _fmt(st.get("p95_ms"), ".1f"),
                    _fmt(st.get("k_settled_mean"), ".2f"),
                    _fmt(st.get("ratio_oracle"), ".3f"),
                    _fmt(st.get("ratio_best_fixed"), ".3f"),
                ]
            )
        if body:
            lines += _table(SEGMENT_HEADER, body, SEGMENT_PRIORITY, width)
    lines.append("")
    os_ = overall.get("oracle_schedule") or {}
    lines += _wrap(
        f"whole run: best single fixed {bf or '-'} "
        f"{_fmt((overall.get('best_fixed') or {}).get('tokens_per_s'), '.1f')} tok/s; "
        f"per-segment oracle {_fmt(os_.get('tokens_per_s'), '.1f')} tok/s "
        f"(k {', '.join(f'{names.get(n, n)} {k}' for n, k in (os_.get('ks') or {}).items()) or '-'}; "
        f"gain over best fixed {_fmt(_pct(overall.get('oracle_gain')), '+.1f')}%)",
        width,
    )
    fixed_loaded = any(under_load.get(m) for m in under_load if is_fixed(m))
    for m, n in under_load.items():
        if n and not is_fixed(m) and not fixed_loaded:
            lines += _wrap(
                f"not like for like: {m} ran {n} steps under load or in recovery, the fixed "
                "modes none; its ratios below compare different conditions",
                width,
            )
    om = overall.get("modes", {})
    body = []
    for m in [m for m in om if not is_fixed(m)] + ([bf] if bf else []):
        st = om[m]
        body.append(
            [
                m,
                _fmt(st.get("tokens_per_s"), ".1f"),
                _fmt(st.get("tokens_per_s_with_overhead"), ".1f"),
                _fmt(st.get("controller_ms_per_step"), ".3f"),
                _fmt(st.get("p50_ms"), ".1f"),
                _fmt(st.get("p95_ms"), ".1f"),
                _fmt(st.get("k_mean"), ".2f"),
                _fmt(st.get("ratio_best_fixed"), ".3f"),
                _fmt(st.get("ratio_oracle"), ".3f"),
            ]
        )
    lines += _table(OVERALL_HEADER, body, OVERALL_PRIORITY, width)
    return "\n".join(lines)


def _table(
    header: list[str], body: list[list[str]], priority: tuple[int, ...], width: int | None
) -> list[str]:
    """A table without the columns that hold only dashes (a ratio with nothing to compare
    with), the rest fitted to `width`."""
    keep = [i for i in range(len(header)) if i == 0 or any(r[i] != "-" for r in body)]
    return text_table(
        [header[i] for i in keep],
        [[r[i] for i in keep] for r in body],
        width=width,
        priority=[priority[i] for i in keep],
    )


def _pct(x: float | None) -> float | None:
    return None if x is None else x * 100.0


def integer_ticks(lo: float, hi: float, most: int) -> list[int]:
    """At most `most` whole numbers from lo to hi, evenly stepped: the ticks of an axis whose
    values are whole (a draft length k, a step number), never 2.7."""
    a, b = math.floor(lo), math.ceil(hi)
    span = max(b - a, 0)
    step = max(1, math.ceil(span / max(most - 1, 1)))
    return list(range(a, b + 1, step))


def set_integer_ticks(f: Any, axis: str, values: Sequence[float], most: int) -> None:
    """Whole-number ticks on a plotext figure's `axis` ('x' or 'y') for `values`."""
    if not values:
        return
    ticks = integer_ticks(min(values), max(values), most)
    f.ruler(axis).ticks(ticks, [str(t) for t in ticks])


def k_tracking_plot(ev: dict[str, Any], mode: str, width: int = 100, height: int = 14) -> str:
    """A text plot of a controller's k by step (x) over the segments' oracle k (·)."""
    track = (ev.get("k_tracks") or {}).get(mode) or []
    if not track:
        return ""
    xs = list(range(1, len(track) + 1))
    oracle: list[float] = []
    bounds: list[float] = []
    for seg in ev.get("segments", []):
        k = (seg.get("oracle") or {}).get("k")
        for step in range(seg["first_step"], seg["last_step"] + 1):
            if k is not None and step <= len(track):
                oracle.append(step)
                oracle.append(float(k))
        if seg["first_step"] > 1:
            bounds.append(seg["first_step"] - 0.5)

    def draw(f: Any) -> None:
        if oracle:
            f.draw(f.signal(oracle[0::2], oracle[1::2], marker="·"))
        f.draw(f.signal(xs, [float(k) for k in track], marker="x"))
        set_integer_ticks(f, "y", [float(k) for k in track] + oracle[1::2], max(2, height // 2))
        set_integer_ticks(f, "x", xs, max(2, width // 10))
        for b in sorted(set(bounds)):
            f.line(b, "v")
        f.title(f"{mode}: k by step (x), per-segment oracle k (·)")

    return text_plot(width, height, draw)


def text_plot(width: int, height: int, draw: Callable[[Any], None]) -> str:
    """A plotext figure drawn by `draw`, as plain text (no colour) at exactly width x height:
    plotext's figure is global, so it is cleared before and after."""
    import plotext as plt

    plt.terminal.limit(False, False)
    f = plt.figure
    f.clear()
    try:
        f.theme("colorless")
        f.plot_size(width, height)
        draw(f)
        return plt.uncolorize(f.build().string())
    finally:
        f.clear()


def k_tracking_plots(ev: dict[str, Any], width: int = 100, height: int = 14) -> str:
    return "\n".join(k_tracking_plot(ev, m, width, height) for m in ev.get("adaptive_modes", []))
