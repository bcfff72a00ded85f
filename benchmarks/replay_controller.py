"""Replay a controller on the fixed-k traces of recorded evaluation runs.

An interleaved evaluation runs every fixed k at every step, on the same prompt, within a
second of each other. A controller replayed on those traces gets, at step t, the reply that
fixed_k got at step t for the k it asks for. That tests a change to a controller on the
machine's real noise (level drift, latency spikes) in a second instead of a 6-minute run;
a replayed run and a live one see different noise, so both are measurements, and only the
live evaluation goes into docs/results.md.

    python benchmarks/replay_controller.py RUN_DIR... [--controller model]

RUN_DIR: a `halospec-tui evaluate --out DIR` run folder (with results.csv), e.g.
DIR/run-1 (its profile.toml sets the controller up). Prints, per run, the whole-run tokens/s over the best fixed k (no controller
overhead: the replay does not time it) and the share of steps at each k.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

from halospec_tui import profile as profile_mod
from halospec_tui.core.controllers import make_controller
from halospec_tui.core.controllers.base import Observation

Trace = dict[tuple[int, int], dict[str, str]]  # (k, step) -> results.csv row of fixed_k


def load_trace(run_dir: Path) -> Trace:
    rows = csv.DictReader((run_dir / "results.csv").open(newline=""))
    return {
        (int(r["mode"][6:]), int(r["step"])): r
        for r in rows
        if r["mode"].startswith("fixed_") and r["success"] == "1"
    }


def _num(x: str, kind: type = float):  # type: ignore[no-untyped-def]
    return kind(float(x)) if x not in ("", None) else None


def observation(k: int, r: dict[str, str]) -> Observation:
    return Observation(
        k=k,
        success=True,
        latency_ms=float(r["latency_ms"]),
        tokens=int(r["tokens"]),
        draft_n=_num(r["draft_n"], int),
        draft_n_accepted=_num(r["draft_n_accepted"], int),
        predicted_n=_num(r["predicted_n"], int),
        predicted_ms=_num(r["predicted_ms"]),
        prompt_ms=_num(r["prompt_ms"]),
        category=r["category"],
    )


def tokens_per_s(rows: list[dict[str, str]]) -> float:
    return sum(int(r["tokens"]) for r in rows) / sum(float(r["latency_ms"]) for r in rows) * 1e3


def replay(trace: Trace, controller: str, settings: Path) -> tuple[float, list[int]]:
    """(tokens/s over the best fixed k's, the k played at each step), the controller set up
    from the run's profile.toml (its settings as the run had them)."""
    ks_fixed = sorted({k for k, _ in trace})
    steps = sorted({s for _, s in trace if all((k, s) in trace for k in ks_fixed)})
    ctl = make_controller(f"adaptive:{controller}", profile_mod.load(settings))
    played: list[int] = []
    for s in steps:
        k = min(max(ctl.decide().k, ks_fixed[0]), ks_fixed[-1])
        played.append(k)
        ctl.observe(observation(k, trace[(k, s)]))
    best = max(tokens_per_s([trace[(k, s)] for s in steps]) for k in ks_fixed)
    return tokens_per_s([trace[(k, s)] for k, s in zip(played, steps, strict=True)]) / best, played


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="evaluate run folders (with results.csv)")
    ap.add_argument("--controller", default="model", help="model, bandit, heuristic, ...")
    a = ap.parse_args()
    ratios = []
    for run in a.runs:
        if not (run / "results.csv").is_file():
            print(f"replay_controller: {run}: no results.csv (expected an evaluate run folder)")
            return 2
        ratio, played = replay(load_trace(run), a.controller, run / "profile.toml")
        ratios.append(ratio)
        share = Counter(played)
        ks = " ".join(f"k{k} {share[k] / len(played):.0%}" for k in sorted(share))
        print(f"{run}: {ratio:.4f} of the best fixed k   ({ks})")
    if len(ratios) > 1:
        print(f"mean {sum(ratios) / len(ratios):.4f}, worst {min(ratios):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
