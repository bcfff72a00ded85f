"""Replay a controller on the fixed-k traces of recorded evaluation runs.

An interleaved evaluation runs every fixed k at every step, on the same prompt, within a
second of each other. A controller replayed on those traces gets, at step t, the reply that
fixed_k got at step t for the k it asks for. That tests a change to a controller on the
machine's real noise (level drift, latency spikes) in a second instead of a 6-minute run;
a replayed run and a live one see different noise, so both are measurements, and only the
live evaluation goes into docs/results.md.

    python benchmarks/replay_controller.py RUN_DIR... [--controller model]

RUN_DIR: a `halospec-tui evaluate --out DIR` run folder (with results.csv), e.g.
DIR/run-1 (its profile.toml sets the controller up). Prints, per run, the whole-run tokens/s
over the best fixed k (no controller overhead: the replay does not time it), each phase's
settled tokens/s over that phase's oracle fixed k (scored by the evaluation's own code, so
the same segments and settling as `evaluate`), and the share of steps at each k. Where the
run measured only some k (scenario.fixed_k), a k the controller asks for that has no trace
is played as the nearest measured k: an approximation, said in the k shares printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from pathlib import Path

from halospec_tui import modes
from halospec_tui import profile as profile_mod
from halospec_tui.controllers.base import Observation
from halospec_tui.controllers.registry import make_controller
from halospec_tui.core.evaluation.metrics import evaluation_for_run
from halospec_tui.core.events import StepRow
from halospec_tui.core.results import ResultsFileError, load_rows

Trace = dict[tuple[int, int], StepRow]  # (k, step) -> the results.csv row of fixed_k


def load_trace(run_dir: Path) -> Trace:
    return {
        (r.draft_length, r.step): r
        for r in load_rows(run_dir / "results.csv")
        if modes.is_fixed(r.mode) and r.success
    }


def replay(
    trace: Trace, controller: str, settings: Path
) -> tuple[float, dict[str, float], list[int]]:
    """(tokens/s over the best fixed k's, each phase's settled ratio to its oracle, the k
    played at each step), the controller set up from the run's profile.toml (its settings as
    the run had them). Only steps where every fixed k succeeded count, for every mode."""
    ks_fixed = sorted({k for k, _ in trace})
    steps = sorted({s for _, s in trace if all((k, s) in trace for k in ks_fixed)})
    prof = profile_mod.load(settings)
    mode = modes.adaptive(controller)
    ctl = make_controller(mode, prof.controller)
    played: list[int] = []
    rows = [trace[(k, s)] for k in ks_fixed for s in steps]
    for s in steps:
        asked = ctl.decide().k
        # a run with scenario.fixed_k a subset of 1..8 has no trace for some k: the nearest
        # measured one answers (the lower on a tie), and the controller is told the k it got
        k = min(ks_fixed, key=lambda m: (abs(m - asked), m))
        played.append(k)
        row = trace[(k, s)]
        ctl.observe(Observation.of(k, row, row.category))
        rows.append(dataclasses.replace(row, mode=mode))
    ev = evaluation_for_run(rows, prof)
    assert ev is not None  # fixed modes and one adaptive mode: always evaluated
    phases = {seg["name"]: seg["modes"][mode].get("ratio_oracle") for seg in ev["segments"]}
    return ev["overall"]["modes"][mode]["ratio_best_fixed"], phases, played


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="evaluate run folders (with results.csv)")
    ap.add_argument("--controller", default="model", help="model, bandit, heuristic, ...")
    a = ap.parse_args()
    ratios = []
    for run in a.runs:
        try:
            trace = load_trace(run)
        except ResultsFileError as e:
            print(f"replay_controller: {e} (expected an evaluate run folder)")
            return 2
        ratio, phases, played = replay(trace, a.controller, run / "profile.toml")
        ratios.append(ratio)
        share = Counter(played)
        ks = " ".join(f"k{k} {share[k] / len(played):.0%}" for k in sorted(share))
        ph = ", ".join(f"{name} {r:.3f}" for name, r in phases.items() if r is not None)
        print(f"{run}: {ratio:.4f} of the best fixed k; per phase of its oracle: {ph}   ({ks})")
    if len(ratios) > 1:
        print(f"mean {sum(ratios) / len(ratios):.4f}, worst {min(ratios):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
