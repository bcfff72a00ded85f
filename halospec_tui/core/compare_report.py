"""A comparison of runs (core/compare.py) as text, Markdown and self-contained HTML.

Every view shows the same dict: the runs, a table of each mode side by side with every later
run's difference from the baseline, the recommendations, what differed between the runs, and
a chart of the figure of merit by draft length k, one line per run: plotext text for the
terminal and Markdown, an SVG drawn here for HTML (no script, no external asset, so the file
can be attached to an issue and opened anywhere).
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Callable
from typing import Any

from halospec_tui import redact
from halospec_tui.core.evaluation.text import text_plot
from halospec_tui.core.tables import text_table

Draw = Callable[[Any, int, int], None]
MARKERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# colour-blind-safe (Okabe-Ito) for the SVG lines, in run order
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
RANK = {"best": "best", "tied": "tied", "worse": "worse", "not_ranked": "not ranked"}
VERDICT = {
    "better": "better",
    "worse": "worse",
    "same": "same (within ±{m})",
    "better?": "better? (not after Holm)",
    "worse?": "worse? (not after Holm)",
    "unclear": "within noise",
}


def _f(v: float | None, nd: int) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _nd(cmp: dict[str, Any]) -> int:
    return 1 if cmp["metric"] == "tokens_per_s" else 0


def estimate_cell(v: dict[str, Any] | None, nd: int) -> str:
    """value [lo, hi] of one mode of one run, '-' when the run has no such mode."""
    if not v or v.get("value") is None:
        return "-"
    if v.get("lo") is None or v.get("hi") is None:
        return _f(v["value"], nd)
    return f"{v['value']:.{nd}f} [{v['lo']:.{nd}f}, {v['hi']:.{nd}f}]"


def rank_cell(v: dict[str, Any] | None) -> str:
    if not v:
        return ""
    return RANK.get(v.get("label", ""), v.get("label", ""))


def pct(x: float) -> str:
    return f"{x * 100:+.1f} %"


def diff_cell(d: dict[str, Any] | None) -> str:
    """'+12.3 % [+8.1, +16.0]': one mode between two runs, with its 95 % interval."""
    if d is None:
        return "-"
    return f"{pct(d['diff'])} [{d['lo'] * 100:+.1f}, {d['hi'] * 100:+.1f}]"


def verdict_cell(d: dict[str, Any] | None, margin: float) -> str:
    if d is None:
        return ""
    v = d.get("verdict", "")
    return VERDICT.get(v, v).format(m=f"{margin * 100:.0f} %")


VERDICT_SHORT = {"unclear": "noise", "same": "same"}


def table(cmp: dict[str, Any], *, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """The side-by-side table: per run its estimate and rank; per later run its difference
    from the baseline and the verdict on it. `compact` (a narrow screen): per run one column,
    the value and its rank without the interval; the difference's interval in whole percent,
    the verdict in a word."""
    nd = _nd(cmp)
    runs = cmp["runs"]
    base = cmp["baseline"]
    others = [r["label"] for r in runs if r["label"] != base]
    unit = cmp["metric_label"]
    header = ["mode"]
    for r in runs:
        if compact:
            header.append(f"{r['label']} {unit}")
        else:
            header += [f"{r['label']} {unit} (95% CI)", f"{r['label']} rank"]
    for o in others:
        header += [f"{o} vs {base}" + ("" if compact else " (95% CI)"), f"{o} vs {base}"]
    diffs = {(d["run"], d["mode"]): d for d in cmp["differences"]}
    body = []
    for mode in cmp["modes"]:
        row = [mode]
        for r in runs:
            v = r["modes"].get(mode)
            if compact:
                value = "-" if not v or v.get("value") is None else f"{v['value']:.{nd}f}"
                rank = "n/r" if v and v.get("label") == "not_ranked" else rank_cell(v)
                row.append(f"{value} {rank}".strip())
            else:
                row += [estimate_cell(v, nd), rank_cell(v)]
        for o in others:
            d = diffs.get((o, mode))
            if compact:
                cell = (
                    "-"
                    if d is None
                    else (f"{pct(d['diff'])} [{d['lo'] * 100:+.0f}, {d['hi'] * 100:+.0f}]")
                )
                word = "" if d is None else VERDICT_SHORT.get(d["verdict"], d["verdict"])
                row += [cell, word]
            else:
                row += [diff_cell(d), verdict_cell(d, cmp["margin"])]
        body.append(row)
    return header, body


def diff_start(cmp: dict[str, Any], *, compact: bool = False) -> int:
    """The index of the first difference column of `table`."""
    return 1 + (1 if compact else 2) * len(cmp["runs"])


def row_verdicts(cmp: dict[str, Any]) -> list[list[str]]:
    """Per row of `table`, the verdict of each difference cell ('' where none): for colour."""
    diffs = {(d["run"], d["mode"]): d["verdict"] for d in cmp["differences"]}
    others = [r["label"] for r in cmp["runs"] if r["label"] != cmp["baseline"]]
    return [[diffs.get((o, mode), "") for o in others] for mode in cmp["modes"]]


def run_lines(cmp: dict[str, Any]) -> list[str]:
    out = []
    for r in cmp["runs"]:
        what = [f"{r['label']}  {r['source']}"]
        for key in ("profile", "backend", "model"):
            if r.get(key):
                what.append(f"{key} {r[key]}")
        what.append(f"{r['steps']} steps")
        out.append("  ".join(what))
    return out


def verdict_lines(cmp: dict[str, Any]) -> list[str]:
    """Each run's recommendation and why, and whether the runs agree."""
    out = []
    for r in cmp["runs"]:
        rec = r["recommended"] or "nothing"
        tied = [t for t in r.get("tied") or [] if t != r["recommended"]]
        extra = f" (tied with {', '.join(tied)})" if tied else ""
        out.append(f"{r['label']} recommends {rec}{extra}: {r.get('reason') or '-'}")
    if len(cmp["runs"]) > 1:
        out.append(agreement(cmp))
    return out


def agreement(cmp: dict[str, Any]) -> str:
    """Do the runs give the same answer? Different picks inside each other's tie sets are
    the same answer within noise, not a change."""
    runs = cmp["runs"]
    if cmp["same_answer"]:
        return "the runs recommend the same mode"
    picks = [r["recommended"] for r in runs]
    if None not in picks and all(
        p in (r.get("tied") or [r["recommended"]]) for r in runs for p in picks
    ):
        return (
            "the runs recommend different modes, but every pick is in every run's tie set: "
            "the same answer within noise"
        )
    return "the runs recommend different modes"


def summary_line(cmp: dict[str, Any]) -> str:
    """How many modes got better, worse, stayed the same, per later run."""
    parts = []
    for r in cmp["runs"][1:]:
        ds = [d for d in cmp["differences"] if d["run"] == r["label"]]
        counts = {v: sum(1 for d in ds if d["verdict"] == v) for v in VERDICT}
        maybe = counts["better?"] + counts["worse?"]
        parts.append(
            f"{r['label']} vs {cmp['baseline']}: {counts['better']} better, "
            f"{counts['worse']} worse, {counts['same']} the same, "
            + (f"{maybe} suggestive but not held after Holm, " if maybe else "")
            + f"{counts['unclear']} within noise (of {len(ds)} modes compared)"
        )
    return "; ".join(parts)


# --- the chart -----------------------------------------------------------------------------


def chart_draw(cmp: dict[str, Any]) -> Draw | None:
    """A plotext draw function (figure, width, height): the figure of merit by k per run."""
    series = {lab: pts for lab, pts in cmp["chart"].items() if pts}
    if not series:
        return None
    ks = sorted({int(p[0]) for pts in series.values() for p in pts})

    def draw(f: Any, w: int, h: int) -> None:
        for i, (lab, pts) in enumerate(series.items()):
            marker = MARKERS[i % len(MARKERS)] if len(lab) > 1 else lab
            f.draw(
                f.signal([p[0] for p in pts], [p[1] for p in pts], marker=marker).label(lab).lines()
            )
        f.ruler("x").ticks(ks, [str(k) for k in ks])
        f.label("draft length k", "x")

    return draw


def chart_title(cmp: dict[str, Any]) -> str:
    better = "higher" if cmp["higher_is_better"] else "lower"
    return f"{cmp['metric_label']} by draft length k, per run ({better} is better)"


def chart_text(cmp: dict[str, Any], width: int = 78, height: int = 16) -> str:
    """The chart as plain text (no colour), or '' when no run has a fixed k."""
    draw = chart_draw(cmp)
    if draw is None:
        return ""

    def draw_titled(f: Any) -> None:
        draw(f, width, height)
        f.title(chart_title(cmp))

    return text_plot(width, height, draw_titled)


def svg_chart(cmp: dict[str, Any], width: int = 720, height: int = 360) -> str:
    """The chart as inline SVG: a line per run, each point with its 95 % interval."""
    series = {lab: pts for lab, pts in cmp["chart"].items() if pts}
    if not series:
        return ""
    pad_l, pad_r, pad_t, pad_b = 64, 110, 30, 46
    ks = sorted({p[0] for pts in series.values() for p in pts})
    ys = [y for pts in series.values() for p in pts for y in p[1:] if y is not None]
    kmin, kmax = min(ks) - 0.3, max(ks) + 0.3  # room for the intervals at the ends
    ymin, ymax = min(ys), max(ys)
    if ymax == ymin:
        ymin, ymax = ymin - 1, ymax + 1
    span = ymax - ymin
    ymin, ymax = ymin - 0.05 * span, ymax + 0.05 * span

    def x(k: float, dodge: float = 0.0) -> float:
        return pad_l + (k - kmin) / (kmax - kmin) * (width - pad_l - pad_r) + dodge

    def y(v: float) -> float:
        return pad_t + (ymax - v) / (ymax - ymin) * (height - pad_t - pad_b)

    e = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{e(chart_title(cmp))}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect x="{pad_l}" y="{pad_t}" width="{width - pad_l - pad_r}" '
        f'height="{height - pad_t - pad_b}" fill="none" stroke="#999"/>',
    ]
    for i in range(5):
        v = ymin + (ymax - ymin) * i / 4
        parts.append(
            f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
            'stroke="#eee"/>'
            f'<text x="{pad_l - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>'
        )
    for k in ks:
        parts.append(
            f'<text x="{x(k):.1f}" y="{height - pad_b + 16}" text-anchor="middle">{k:g}</text>'
        )
    parts.append(
        f'<text x="{(pad_l + width - pad_r) / 2:.1f}" y="{height - 8}" '
        'text-anchor="middle">draft length k</text>'
        f'<text x="{pad_l}" y="18">{e(chart_title(cmp))}</text>'
        f'<text x="{width - pad_r + 12}" y="{height - pad_b}" fill="#666">bars: 95 % CI</text>'
    )
    n = len(series)
    for i, (lab, pts) in enumerate(series.items()):
        c = COLORS[i % len(COLORS)]
        dash = "" if i == 0 else f' stroke-dasharray="{4 + 2 * i},{3}"'
        dx = (i - (n - 1) / 2) * 7.0  # runs side by side at each k, so intervals stay apart
        path = " ".join(f"{x(p[0], dx):.1f},{y(p[1]):.1f}" for p in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        for p in pts:
            px = x(p[0], dx)
            tip = f"{e(lab)} k={p[0]:g}: {p[1]:.2f}"
            if p[2] is not None and p[3] is not None:
                tip += f" [{p[2]:.2f}, {p[3]:.2f}]"
                for yy in (p[2], p[3]):
                    parts.append(
                        f'<line x1="{px - 3:.1f}" x2="{px + 3:.1f}" y1="{y(yy):.1f}" '
                        f'y2="{y(yy):.1f}" stroke="{c}" stroke-width="1.5"/>'
                    )
                parts.append(
                    f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{y(p[2]):.1f}" '
                    f'y2="{y(p[3]):.1f}" stroke="{c}" stroke-width="1.5"/>'
                )
            parts.append(
                f'<circle cx="{px:.1f}" cy="{y(p[1]):.1f}" r="3.5" fill="{c}">'
                f"<title>{tip}</title></circle>"
            )
        ly = pad_t + 16 + 18 * i
        parts.append(
            f'<line x1="{width - pad_r + 12}" x2="{width - pad_r + 36}" y1="{ly - 4}" '
            f'y2="{ly - 4}" stroke="{c}" stroke-width="2"{dash}/>'
            f'<text x="{width - pad_r + 42}" y="{ly}">{e(lab)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


# --- the views ------------------------------------------------------------------------------


def _wrap(text: str, width: int, indent: str = "  ") -> list[str]:
    """Wrapped at `width`, never inside "k = 4" or "95 %" (held together while wrapping)."""
    glued = re.sub(r"(\bk) = (\d)", "\\1\x00=\x00\\2", text)
    glued = re.sub(r"(\d) %", "\\1\x00%", glued)
    lines = textwrap.wrap(
        glued,
        width,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_on_hyphens=False,
    )
    return [line.replace("\x00", " ") for line in lines] or [indent]


def title(cmp: dict[str, Any]) -> str:
    n = len(cmp["runs"])
    if n == 1:
        return f"Run {cmp['runs'][0]['source']}: {cmp['metric_label']} per mode"
    return f"Comparison of {n} runs: {cmp['metric_label']} per mode"


def notes_heading(cmp: dict[str, Any]) -> str:
    return "Conditions that differ" if len(cmp["runs"]) > 1 else "Notes"


def format_text(
    cmp: dict[str, Any],
    *,
    chart: bool = True,
    width: int = 78,
    prose_width: int = 100,
    columns: int | None = None,
) -> str:
    """`report A B --text`: what a terminal or a log shows (the table as wide as it needs,
    sentences wrapped at `prose_width`). `columns`: the terminal's width; a table wider than
    that is printed compact (table(compact=True)), sentences wrap to it."""
    compact = False
    if columns is not None:
        compact = max(len(line) for line in text_table(*table(cmp))) > columns
        prose_width = min(prose_width, max(40, columns - 1))
        width = min(width, max(40, columns - 1))
    lines = [
        f"COMPARE {len(cmp['runs'])} runs: {cmp['metric_label']} per mode, baseline "
        f"{cmp['baseline']}",
        *[w for x in run_lines(cmp) for w in _wrap(x, prose_width)],
        "",
        *text_table(*table(cmp, compact=compact)),
        "",
        *_wrap(f"method: {cmp['method']}", prose_width, ""),
    ]
    if len(cmp["runs"]) > 1:
        lines += _wrap(summary_line(cmp), prose_width, "")
    lines += ["", "recommendations:"]
    for x in verdict_lines(cmp):
        lines += _wrap(x, prose_width)
    notes = cmp["conditions"]
    lines += [
        "",
        "conditions that differ between the runs:"
        if notes
        else "same conditions "
        "(backend, model, draft channel, settings; no contaminated or load steps)",
    ]
    for n in notes:
        lines += _wrap(n, prose_width)
    text = chart_text(cmp, width=width) if chart else ""
    if text:
        lines += ["", text]
    return redact.scrub("\n".join(lines))


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|")


def format_markdown(cmp: dict[str, Any]) -> str:
    """`--export md`: the comparison as a Markdown document (the chart as a text block)."""
    header, body = table(cmp)
    out = [
        f"# {title(cmp)}",
        "",
        *[f"- **{x.split('  ', 1)[0]}** {x.split('  ', 1)[1]}" for x in run_lines(cmp)],
        "",
        "| " + " | ".join(_md_cell(h) for h in header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
        *["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in body],
    ]
    if len(cmp["runs"]) > 1:
        out += ["", f"Method: {cmp['method']}.", "", summary_line(cmp) + "."]
    out += ["", "## Recommendations", "", *[f"- {x}" for x in verdict_lines(cmp)], ""]
    out += [f"## {notes_heading(cmp)}", ""]
    out += [f"- {n}" for n in cmp["conditions"]] or ["- none found"]
    text = chart_text(cmp)
    if text:
        out += ["", "## Chart", "", "```text", text, "```"]
    return redact.scrub("\n".join(out) + "\n")


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.better { background: #c8e6c9; } td.worse { background: #f8c8c4; }
td.maybe-better { background: #eef7ee; } td.maybe-worse { background: #fdf0ee; }
.notes li { margin: 2px 0; } code { background: #f4f4f4; padding: 0 3px; }
"""


CELL_CLASS = {
    "better": "better",
    "worse": "worse",
    "better?": "maybe-better",
    "worse?": "maybe-worse",
}


def format_html(cmp: dict[str, Any]) -> str:
    """`--export html`: one self-contained file (inline CSS and SVG, nothing fetched)."""
    e = html.escape
    header, body = table(cmp)
    first = diff_start(cmp)
    rows = []
    for row, verdicts in zip(body, row_verdicts(cmp), strict=True):
        cells = [f"<td>{e(c)}</td>" for c in row[:first]]
        for i, c in enumerate(row[first:]):
            cls = CELL_CLASS.get(verdicts[i // 2], "")
            cells.append(f'<td class="{cls}">{e(c)}</td>' if cls else f"<td>{e(c)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = title(cmp)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(head)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(head)}</h1>",
        "<ul>" + "".join(f"<li><code>{e(x)}</code></li>" for x in run_lines(cmp)) + "</ul>",
        "<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead>",
        "<tbody>" + "\n".join(rows) + "</tbody></table>",
    ]
    if len(cmp["runs"]) > 1:
        parts.append(f"<p>Method: {e(cmp['method'])}.</p>")
        parts.append(f"<p>{e(summary_line(cmp))}.</p>")
    parts.append(svg_chart(cmp))
    parts.append("<h2>Recommendations</h2><ul>")
    parts += [f"<li>{e(x)}</li>" for x in verdict_lines(cmp)]
    parts.append(f'</ul><h2>{notes_heading(cmp)}</h2><ul class="notes">')
    parts += [f"<li>{e(n)}</li>" for n in cmp["conditions"]] or ["<li>none found</li>"]
    parts.append("</ul></body></html>")
    return redact.scrub("\n".join(parts) + "\n")


EXPORTS: dict[str, Callable[[dict[str, Any]], str]] = {
    "md": format_markdown,
    "html": format_html,
}
