"""Headless output: one line per step as it happens, then HaloSpec's summary table."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from halospec_tui import redact
from halospec_tui.core.evaluation.text import format_evaluation
from halospec_tui.core.events import (
    Event,
    LoadChanged,
    ModeFinished,
    ModeStarted,
    Notice,
    Paused,
    PhaseChanged,
    RunStarted,
    Standings,
    StepResult,
    WarmupDone,
)
from halospec_tui.core.recommendation import standings_line
from halospec_tui.core.tables import text_table
from halospec_tui.core.verdict import describe
from halospec_tui.modes import is_fixed


def _f(v: Any, fmt: str = ".1f", none: str = "-") -> str:
    return none if v is None else format(v, fmt)


class HeadlessPrinter:
    """Queued event subscriber that prints a line per step (never slows the run).

    When its reader goes away (`| head -3`), the first failed write calls `on_closed` once
    and nothing more is printed: the command decides what a closed pipe means (it stops the
    run, as a shell expects of a program whose output nobody reads)."""

    def __init__(
        self, out: TextIO | None = None, *, on_closed: Callable[[], None] | None = None
    ) -> None:
        self.out = out or sys.stdout
        self.on_closed = on_closed
        self.closed = False
        self._steps: dict[str, int] = {}
        self._said = ""

    def _print(self, line: str) -> None:
        if self.closed:
            return
        try:
            print(redact.scrub(line), file=self.out, flush=True)
        except (BrokenPipeError, ValueError):  # the reader left; ValueError: stream closed
            self.closed = True
            if self.on_closed is not None:
                self.on_closed()

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, RunStarted):
            self._print(
                f"run {ev.run_dir}  profile {ev.profile}  backend {ev.backend} "
                f"({ev.settings.get('url', '')})  draft channel {ev.draft_channel}  "
                f"model {ev.model}  {len(ev.modes)} modes, {ev.total_steps} steps"
            )
        elif isinstance(ev, ModeStarted):
            self._steps[ev.mode] = ev.steps
            self._print(
                f"== {ev.mode} ({ev.index + 1}/{ev.count}): {ev.warmup} warmup, "
                f"{ev.steps} steps, controller {ev.controller}"
            )
        elif isinstance(ev, WarmupDone):
            th = ", ".join(f"{k} {_f(v, '.0f')}" for k, v in ev.thresholds.items()) or "-"
            lat = ", ".join(f"{x:.0f}" for x in ev.latencies_ms)
            self._print(
                f"   warmup done [{lat}] ms; thresholds: {th}{'; ' + ev.note if ev.note else ''}"
            )
        elif isinstance(ev, PhaseChanged) and ev.phase != "warmup":
            self._print(f"   -- phase {ev.phase.upper()} from step {ev.step}")
        elif isinstance(ev, LoadChanged):
            what = f"CPU load ON ({ev.cores} cores" + (
                f", {ev.duration_s:g} s scheduled)" if ev.scheduled and ev.duration_s else ")"
            )
            self._print(f"   -- {what if ev.on else 'CPU load OFF'}")
        elif isinstance(ev, Paused):
            self._print("   -- paused" if ev.paused else "   -- resumed")
        elif isinstance(ev, Notice):
            self._print(f"   !! {ev.level}: {ev.text}")
        elif isinstance(ev, ModeFinished):
            dc = ev.summary.get("draft_control")
            if dc:  # the mode's draft-length verdict, as soon as it is known
                self._print(f"   == {ev.mode} done: {describe(dc)}")
        elif isinstance(ev, Standings) and not ev.final:
            line = standings_line(ev.recommendation)
            if line and line != self._said:  # only when the picture changes
                self._said = line
                self._print(f"   ~~ round {ev.round}: {line}")
        elif isinstance(ev, StepResult):
            r = ev.row
            n = self._steps.get(r.mode, 0)
            if r.success:
                status = f"{r.latency_ms:8.1f} ms {r.tokens:4d} tok"
                if r.ttft_ms is not None:
                    status += f" ttft {r.ttft_ms:6.1f} ms"
            elif r.interrupted:
                status = "INTERRUPTED (stopped while its request was in flight; not counted)"
            else:
                status = f"FAILED: {r.error}"
            extra = ""
            if r.success and r.draft_n is not None:
                extra = f"  acc {_f(r.acceptance, '.2f')} obs_k {_f(r.observed_k, '.2f')}"
            ctl = (
                f"  [{r.controller_reason}]"
                if r.controller_reason and r.controller_reason != "fixed"
                else ""
            )
            dirty = f"  !! {r.contaminated}" if r.contaminated else ""
            self._print(
                f"{r.global_step:5d} r{r.round:<3d} {r.mode:>12} {r.step:3d}/{n:<3d} {r.phase:8} "
                f"k={r.draft_length} {status}{extra}{ctl}{dirty}"
            )


COLUMNS = [
    ("mode", "mode", "{}"),
    ("steps", "steps", "{}"),
    ("succ%", "success_rate", "{:.0f}"),
    ("fail", "failures", "{}"),
    ("avg", "avg_ms", "{:.1f}"),
    ("median", "median_ms", "{:.1f}"),
    ("p95", "p95_ms", "{:.1f}"),
    ("min", "min_ms", "{:.1f}"),
    ("max", "max_ms", "{:.1f}"),
    ("stddev", "stddev_ms", "{:.1f}"),
    ("tok/s", "tokens_per_s", "{:.1f}"),
    ("score", "score", "{:.1f}"),
    ("accept", "acceptance", "{:.2f}"),
    ("obs_k", "observed_k", "{:.2f}"),
]
LABELS = {"best": "BEST", "tied": "tied", "worse": "worse", "not_ranked": "not ranked"}


def _cell(mode: dict[str, Any], key: str, fmt: str) -> str:
    v = mode.get(key)
    if v is None:
        return "-"
    if key == "success_rate" and v <= 1.0:
        v = v * 100
    return fmt.format(v)


def confidence_cells(m: dict[str, Any], metric: str) -> list[str]:
    """The figure of merit with its 95 % interval, the difference from the leader, the label."""
    c = m.get("confidence") or {}
    est = c.get("estimate") or {}
    nd = 1 if metric == "tokens_per_s" else 0
    if est.get("value") is None:
        ci = "-"
    elif est.get("lo") is None or est.get("lo") != est.get("lo"):
        ci = f"{est['value']:.{nd}f}"
    else:
        ci = f"{est['value']:.{nd}f} [{est['lo']:.{nd}f}, {est['hi']:.{nd}f}]"
    vs = c.get("vs_leader") or {}
    diff = "-" if vs.get("diff") is None else f"{vs['diff'] * 100:+.1f}%"
    label = LABELS.get(c.get("label", ""), c.get("label", "-") or "-")
    if c.get("label") == "not_ranked" and c.get("why"):
        label = f"not ranked: {c['why']}"
    return [ci, diff, label]


def metric_label(metric: str) -> str:
    return {"tokens_per_s": "tok/s", "score": "score"}.get(metric, metric)


def format_recommendation(summary: dict[str, Any]) -> list[str]:
    """The recommendation block: the mode, why, how sure, what it is tied with, how to apply."""
    rec = summary.get("recommendation")
    if not isinstance(rec, dict):
        return ["recommendation: none (this summary has none)"]
    metric = rec.get("metric") or summary.get("metric") or "tokens_per_s"
    how = "paired by round" if rec.get("paired") else "unpaired"
    lines = [
        f"RECOMMENDATION ({metric_label(metric)}, 95 % CI, {how}): {rec.get('mode') or 'none'}"
    ]
    lines.append(f"  {rec.get('reason', '')}")
    tied = rec.get("tied") or []
    if len(tied) > 1:
        lines.append(f"  tied at the top: {', '.join(tied)}")
    if rec.get("excluded_steps"):
        lines.append(
            f"  {rec['excluded_steps']} contaminated steps (foreign CPU or unscheduled load) "
            "were left out"
        )
    apply = rec.get("apply") or {}
    primary = apply.get("primary")
    if primary == "controller":
        lines.append(f"  apply: {apply.get('controller')}: {apply.get('note', '')}")
    elif primary:
        lines.append(f"  apply on {primary}: {apply.get(primary, '')}")
        others = [f"{k}: {v}" for k, v in apply.items() if k not in ("primary", primary)]
        lines += [f"    {o}" for o in others]
    return lines


def format_summary(summary: dict[str, Any]) -> str:
    """HaloSpec's per-mode table plus acceptance, observed k, the figure of merit with its
    interval, each mode's label and draft-length verdict; then the recommendation."""
    modes = summary.get("modes", [])
    metric = (
        summary.get("metric")
        or (summary.get("recommendation") or {}).get("metric")
        or ("tokens_per_s")
    )
    ml = metric_label(metric)
    header = [c[0] for c in COLUMNS] + [f"{ml} 95% CI", "vs best", "rank", "draft k"]
    body = []
    for m in modes:
        verdict = (m.get("draft_control") or {}).get("verdict", "-")
        body.append(
            [_cell(m, key, fmt) for _, key, fmt in COLUMNS]
            + confidence_cells(m, metric)
            + [verdict]
        )
    lines = text_table(header, body)
    for m in modes:
        if m.get("contaminated_steps"):
            lines.append(
                f"{m['mode']}: {m['contaminated_steps']} contaminated steps (foreign CPU or "
                "unscheduled load), left out of the comparison"
            )
        if not is_fixed(m.get("mode", "")):
            kv = m.get("k_values") or {}
            conv = m.get("convergence_step")
            lines.append(
                f"{m['mode']}: {m.get('draft_changes', 0)} draft-length changes, k {kv.get('min', '-')}..{kv.get('max', '-')} "
                f"(mean {_f(kv.get('mean'), '.2f')}), converged at step {conv if conv is not None else 'never'}"
            )
            phases = m.get("phases") or {}
            if phases:
                lines.append(
                    "   by phase: "
                    + "; ".join(
                        f"{ph} {p.get('steps', 0)} steps avg {_f(p.get('avg_ms'))} ms p95 {_f(p.get('p95_ms'))} ms"
                        for ph, p in phases.items()
                    )
                )
    lines += _latency_split_lines(modes)
    not_applied = [
        m["mode"] for m in modes if (m.get("draft_control") or {}).get("verdict") == "not_applied"
    ]
    if not_applied:
        lines.append(
            f"DRAFT LENGTH NOT APPLIED in {', '.join(not_applied)}: the server did not draft the "
            "requested k; these results do not measure k and are not ranked."
        )
    lines += format_recommendation(summary)
    if summary.get("evaluation"):  # several modes with an adaptive one: compare per segment
        lines += ["", "evaluation (docs/controllers.md):", format_evaluation(summary["evaluation"])]
    return redact.scrub("\n".join(lines))


def _ci(v: Any) -> str:
    return f" [{v[0]:.1f}, {v[1]:.1f}]" if isinstance(v, list) and len(v) == 2 else ""


def _latency_split_lines(modes: list[dict[str, Any]]) -> list[str]:
    """TTFT and inter-token latency per mode (streamed steps only), medians with their 95 %
    intervals (docs/results.md says how they are computed)."""
    streamed = [m for m in modes if m.get("streamed_steps")]
    if not streamed:
        return []
    out = ["streamed replies: TTFT p50 [95 % interval] / p95, inter-token latency p50 / p95, ms"]
    for m in streamed:
        # modes that met CPU load are not comparable with those that did not: say so
        loaded = ((m.get("phases") or {}).get("load") or {}).get("streamed_steps") or 0
        out.append(
            f"   {m['mode']}: ttft {_f(m.get('ttft_p50_ms'))}{_ci(m.get('ttft_p50_ci95_ms'))} / "
            f"{_f(m.get('ttft_p95_ms'))}, itl {_f(m.get('itl_p50_ms'), '.2f')}"
            f"{_ci(m.get('itl_p50_ci95_ms'))} / {_f(m.get('itl_p95_ms'), '.2f')} "
            f"({m['streamed_steps']} steps{f', {loaded} under CPU load' if loaded else ''})"
        )
    return out


def clock(seconds: float) -> str:
    """1:05 or 1:02:03."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class ProgressLine:
    """A progress line with the time left, for a long headless job (evaluate): measured steps
    done of the planned total, the elapsed time and the time left at the rate so far.

    On a terminal it is one line rewritten in place (at most every `refresh_s`), cleared
    before any other line is printed through `say` or the wrapped printer; in a pipe or a log
    it is a plain line at every tenth of the total, so a log gets 10 lines, not thousands.
    A mode that stops early (run.until = "decided") only makes the time left an upper bound."""

    def __init__(
        self,
        total: int,
        inner: Callable[[Event], None] | None = None,
        *,
        out: TextIO | None = None,
        tty: bool | None = None,
        refresh_s: float = 0.25,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = max(1, total)
        self.inner = inner
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.refresh_s = refresh_s
        self.now = now
        self.start = now()
        self.done = 0
        self._shown = False
        self._drawn_at = -1e9
        self._next_tenth = 1

    def line(self) -> str:
        el = self.now() - self.start
        pct = 100.0 * self.done / self.total
        eta = clock(el / self.done * max(0, self.total - self.done)) if self.done else "--:--"
        return (
            # "left", not "ETA": beside an elapsed time, a bare 21:07 reads as a clock time
            f"progress {self.done}/{self.total} steps ({pct:.0f} %) · {clock(el)} elapsed · "
            f"{eta} left"
        )

    def _clear(self) -> None:
        if self.tty and self._shown:
            self.out.write("\r\x1b[K")
            self._shown = False

    def _draw(self, force: bool = False) -> None:
        t = self.now()
        if not force and t - self._drawn_at < self.refresh_s:
            return
        self._drawn_at = t
        self.out.write("\r\x1b[K" + self.line())
        self.out.flush()
        self._shown = True

    def say(self, text: str) -> None:
        """Print a line of its own (the progress line stays below it on a terminal)."""
        self._clear()
        print(text, file=self.out, flush=True)
        if self.tty:
            self._draw(force=True)

    def __call__(self, ev: Event) -> None:
        if self.inner is not None:
            if self.tty and not isinstance(ev, StepResult):
                self._clear()  # the printer may print a line: start it on a clean line
            self.inner(ev)
        if not isinstance(ev, StepResult):
            if self.tty and not self._shown:
                self._draw(force=True)
            return
        self.done += 1
        if self.tty:
            self._draw(force=self.done >= self.total)
        elif self.done * 10 >= self._next_tenth * self.total:
            while self.done * 10 >= self._next_tenth * self.total:
                self._next_tenth += 1
            print(self.line(), file=self.out, flush=True)

    def finish(self) -> None:
        """End the line on a terminal, so what follows starts on a line of its own."""
        if self.tty and self._shown:
            self._draw(force=True)
            self.out.write("\n")
            self.out.flush()
            self._shown = False
