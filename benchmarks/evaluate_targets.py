"""Measure issue 5's three targets on the embedded engine and print them (no assertions).

    python benchmarks/evaluate_targets.py                # 4 scenarios x 3 runs (~30 min)
    python benchmarks/evaluate_targets.py --runs 1 --only stationary
    python benchmarks/evaluate_targets.py --reuse runs/targets-20250101-120000

Each scenario is `halospec-tui evaluate --profile profiles/eval-NAME.toml --runs N` (seeds
run.seed .. run.seed+N-1); the numbers are medians over the runs of each run's ratio.

1. every stationary phase (every segment, settled part: after `settle_steps` = 20 steps of
   warmup): the best new controller's tokens/s >= 0.97 x the per-phase oracle fixed k's;
2. load-shift and content-shift scenarios (and both): the best new controller's whole-run
   tokens/s (its own overhead included) >= 1.10 x the best single fixed k's;
3. stationary control: every new controller >= 0.98 x the best fixed k, overhead included.

The machine must be quiet: the load average is printed before and after every scenario.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("stationary", "content-shift", "load-shift", "both")
NEW = ("adaptive:model", "adaptive:bandit", "adaptive:heuristic")
T1, T2, T3 = 0.97, 1.10, 0.98


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def run_scenario(name: str, out: Path, runs: int, seed: int | None = None) -> dict[str, Any]:
    prof = ROOT / "profiles" / f"eval-{name}.toml"
    cmd = [sys.executable, "-m", "halospec_tui", "evaluate", "--profile", str(prof)]
    cmd += ["--out", str(out / name), "--runs", str(runs)]
    cmd += [] if seed is None else ["--seed", str(seed)]
    print(f"\n## {name}: {' '.join(cmd[1:])}", flush=True)
    print(f"load average before: {loadavg()}", flush=True)
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, cwd=ROOT)
    print(f"load average after: {loadavg()}  ({time.monotonic() - t0:.0f} s)", flush=True)
    return json.loads((out / name / "evaluation.json").read_text(encoding="utf-8"))


def _f(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def targets(evals: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"t1": [], "t2": [], "t3": []}
    for name, ev in evals.items():
        new = [m for m in ev.get("adaptive_modes", []) if m in NEW]
        for seg in ev.get("segments", []):
            ratios = {m: seg["modes"][m].get("ratio_oracle") for m in new}
            best = max((m for m in new if ratios[m] is not None), key=ratios.get, default=None)  # type: ignore[arg-type]
            out["t1"].append(
                {
                    "scenario": name,
                    "segment": seg["name"],
                    "steps": f"{seg['settled_from_step']}..{seg['last_step']}",
                    "oracle": (seg.get("oracle") or {}).get("mode"),
                    "best": best,
                    "ratio": ratios.get(best) if best else None,
                    "ratios": ratios,
                }
            )
        overall = ev.get("overall", {})
        ratios = {m: overall["modes"][m].get("ratio_best_fixed") for m in new}
        row = {
            "scenario": name,
            "best_fixed": (overall.get("best_fixed") or {}).get("mode"),
            "oracle_gain": overall.get("oracle_gain"),
            "ratios": ratios,
        }
        if name == "stationary":
            out["t3"].append(row)
        else:
            best = max((m for m in new if ratios[m] is not None), key=ratios.get, default=None)  # type: ignore[arg-type]
            out["t2"].append({**row, "best": best, "ratio": ratios.get(best) if best else None})
    return out


def report(t: dict[str, Any], runs: int) -> str:
    lines = [
        f"Medians of {runs} run(s).",
        "",
        "Target 1 (>= 0.97 of the per-phase oracle, settled):",
        "",
    ]
    lines.append(
        "| scenario | segment | settled steps | oracle | model | bandit | heuristic | best | pass |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for r in t["t1"]:
        rr = r["ratios"]
        ok = r["ratio"] is not None and r["ratio"] >= T1
        lines.append(
            f"| {r['scenario']} | {r['segment']} | {r['steps']} | {r['oracle']} | "
            f"{_f(rr.get('adaptive:model'))} | {_f(rr.get('adaptive:bandit'))} | "
            f"{_f(rr.get('adaptive:heuristic'))} | {_f(r['ratio'])} | {'yes' if ok else 'NO'} |"
        )
    lines += ["", "Target 2 (>= 1.10 x the best single fixed k, whole run, overhead included):", ""]
    lines.append(
        "| scenario | best fixed | oracle gain | model | bandit | heuristic | best | pass |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in t["t2"]:
        rr = r["ratios"]
        ok = r["ratio"] is not None and r["ratio"] >= T2
        lines.append(
            f"| {r['scenario']} | {r['best_fixed']} | {_f((r['oracle_gain'] or 0) * 100, '+.1f')}% | "
            f"{_f(rr.get('adaptive:model'))} | {_f(rr.get('adaptive:bandit'))} | "
            f"{_f(rr.get('adaptive:heuristic'))} | {_f(r['ratio'])} | {'yes' if ok else 'NO'} |"
        )
    lines += ["", "Target 3 (every new controller >= 0.98 x the best fixed k, stationary):", ""]
    lines.append("| scenario | best fixed | model | bandit | heuristic | pass |")
    lines.append("|---|---|---|---|---|---|")
    for r in t["t3"]:
        rr = r["ratios"]
        ok = all(v is not None and v >= T3 for v in rr.values())
        lines.append(
            f"| {r['scenario']} | {r['best_fixed']} | {_f(rr.get('adaptive:model'))} | "
            f"{_f(rr.get('adaptive:bandit'))} | {_f(rr.get('adaptive:heuristic'))} | "
            f"{'yes' if ok else 'NO (' + ', '.join(m for m, v in rr.items() if v is None or v < T3) + ')'} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--seed", type=int, help="first seed (default: the profiles', 42)")
    ap.add_argument("--only", action="append", choices=SCENARIOS, help="scenario(s) to run")
    ap.add_argument("--reuse", type=Path, help="read OUT/NAME/evaluation.json instead of running")
    args = ap.parse_args()
    names = args.only or list(SCENARIOS)
    evals: dict[str, dict[str, Any]] = {}
    if args.reuse:
        for n in names:
            p = args.reuse / n / "evaluation.json"
            if p.exists():
                evals[n] = json.loads(p.read_text(encoding="utf-8"))
        out = args.reuse
    else:
        out = args.out or ROOT / "runs" / f"targets-{datetime.now():%Y%m%d-%H%M%S}"
        out.mkdir(parents=True, exist_ok=True)
        for n in names:
            evals[n] = run_scenario(n, out, args.runs, args.seed)
    runs = max((e.get("runs", 0) for e in evals.values()), default=0)
    t = targets(evals)
    (out / "targets.json").write_text(json.dumps(t, indent=2) + "\n", encoding="utf-8")
    print()
    print(report(t, runs))
    print(f"\nload average now: {loadavg()}; results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
