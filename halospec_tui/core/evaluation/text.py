"""The evaluation as text: per-segment tables and plotext plots of each controller's k.

`format_evaluation` prints what `metrics.evaluation_for_run` (or the median of several runs)
computed; `k_tracking_plots` draws each controller's k by step over the segments' oracle k
(evaluate writes them to run-N/k_tracking.txt).
"""

from __future__ import annotations

from typing import Any

from halospec_tui.core.tables import text_table
from halospec_tui.modes import is_fixed


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_evaluation(ev: dict[str, Any], *, fixed_detail: bool = True) -> str:
    """The evaluation as text tables: per segment, then the whole run."""
    lines: list[str] = []
    runs = ev.get("runs")
    if runs:
        lines.append(f"median of {runs} runs (seeds {', '.join(map(str, ev.get('seeds', [])))})")
    overall = ev.get("overall") or {}
    bf = (overall.get("best_fixed") or {}).get("mode")
    for seg in ev.get("segments", []):
        o = seg.get("oracle") or {}
        lines.append("")
        lines.append(
            f"segment {seg['name']}: steps {seg['first_step']}..{seg['last_step']}, settled from "
            f"{seg['settled_from_step']}; oracle {o.get('mode', '-')} "
            f"{_fmt(o.get('tokens_per_s'), '.1f')} tok/s"
        )
        modes = seg.get("modes", {})
        shown = [m for m in modes if fixed_detail or not is_fixed(m) or m in (bf, o.get("mode"))]
        body = []
        for m in shown:
            s = modes[m]
            mark = " (oracle)" if m == o.get("mode") else (" (best fixed)" if m == bf else "")
            body.append(
                [
                    m + mark,
                    _fmt(s.get("tokens_per_s"), ".1f"),
                    _fmt(s.get("tokens_per_s_settled"), ".1f"),
                    _fmt(s.get("p50_ms"), ".1f"),
                    _fmt(s.get("p95_ms"), ".1f"),
                    _fmt(s.get("k_settled_mean"), ".2f"),
                    _fmt(s.get("ratio_oracle"), ".3f"),
                    _fmt(s.get("ratio_best_fixed"), ".3f"),
                ]
            )
        lines += text_table(
            ["mode", "tok/s", "settled", "p50 ms", "p95 ms", "k", "/oracle", "/best fixed"], body
        )
    lines.append("")
    os_ = overall.get("oracle_schedule") or {}
    lines.append(
        f"whole run: best single fixed {bf or '-'} "
        f"{_fmt((overall.get('best_fixed') or {}).get('tokens_per_s'), '.1f')} tok/s; "
        f"per-segment oracle {_fmt(os_.get('tokens_per_s'), '.1f')} tok/s "
        f"(k {', '.join(f'{n} {k}' for n, k in (os_.get('ks') or {}).items()) or '-'}; "
        f"gain over best fixed {_fmt(_pct(overall.get('oracle_gain')), '+.1f')}%)"
    )
    om = overall.get("modes", {})
    body = []
    for m in [m for m in om if not is_fixed(m)] + ([bf] if bf else []):
        s = om[m]
        body.append(
            [
                m,
                _fmt(s.get("tokens_per_s"), ".1f"),
                _fmt(s.get("tokens_per_s_with_overhead"), ".1f"),
                _fmt(s.get("controller_ms_per_step"), ".3f"),
                _fmt(s.get("p50_ms"), ".1f"),
                _fmt(s.get("p95_ms"), ".1f"),
                _fmt(s.get("k_mean"), ".2f"),
                _fmt(s.get("ratio_best_fixed"), ".3f"),
                _fmt(s.get("ratio_oracle"), ".3f"),
            ]
        )
    lines += text_table(
        [
            "mode",
            "tok/s",
            "+overhead",
            "ctl ms",
            "p50 ms",
            "p95 ms",
            "k mean",
            "/best fixed",
            "/oracle",
        ],
        body,
    )
    return "\n".join(lines)


def _pct(x: float | None) -> float | None:
    return None if x is None else x * 100.0


def k_tracking_plot(ev: dict[str, Any], mode: str, width: int = 100, height: int = 14) -> str:
    """A text plot of a controller's k by step (x) over the segments' oracle k (·)."""
    import plotext as plt

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
    plt.terminal.limit(False, False)
    f = plt.figure
    f.clear()
    try:
        f.theme("colorless")
        f.plot_size(width, height)
        if oracle:
            f.draw(f.signal(oracle[0::2], oracle[1::2], marker="·"))
        f.draw(f.signal(xs, [float(k) for k in track], marker="x"))
        for b in sorted(set(bounds)):
            f.line(b, "v")
        f.title(f"{mode}: k by step (x), per-segment oracle k (·)")
        out = plt.uncolorize(f.build().string())
    finally:
        f.clear()
    return out


def k_tracking_plots(ev: dict[str, Any], width: int = 100, height: int = 14) -> str:
    return "\n".join(k_tracking_plot(ev, m, width, height) for m in ev.get("adaptive_modes", []))
