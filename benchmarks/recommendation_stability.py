"""How stable is the recommendation? Identical runs, the real CLI, the embedded engine.

For each profile (default: profiles/default.toml and profiles/quick.toml):

1. **reference**: one long interleaved run (``--reference-rounds`` rounds of every mode, no
   scheduled load): the k it finds best is taken as the truth.
2. **before**: ``--runs`` identical runs the way the harness worked before (HaloSpec's
   sequential order, the winner = the lowest score, no interval).
3. **after**: ``--runs`` identical runs with today's defaults (interleaved rounds, tokens/s with
   95 % intervals, ties said as ties).
4. **burner** (``--burner``): like *after*, with a busy process (not the harness's) started by
   this script in the middle of the sweep for ``--burn-s`` seconds; counts the flagged steps
   and checks that every step that ran while it burned was flagged.
5. **decided** (``--decided``): runs with ``run.until = "decided"`` and the requests each took,
   against fixed budgets (``--budgets``) run the same number of times: the smallest fixed
   budget whose runs agree as often as the decided ones.

Reported per profile: how often the recommended k agrees (the most common one's count), whether
every run's tie set holds the reference's best k, and the requests per run. It prints a table and
writes everything to OUT/stability.json.

    python benchmarks/recommendation_stability.py --out /tmp/stab [--runs 5] [--burner] [--decided]
    python benchmarks/recommendation_stability.py --out /tmp/stab --recompute   # same runs, today's code

A measurement, never a test: these machines are noisy, so the numbers are what they are.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from halospec_tui import profile as P  # noqa: E402


def run_cli(prof: P.Profile, out: Path, *, burn: tuple[float, float] | None = None) -> dict:
    """One headless run of the real CLI; `burn` = (start after s, seconds) of a foreign
    busy process. Returns summary.json plus the rows and the burn window."""
    path = out.with_suffix(".toml")
    prof.save(path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "halospec_tui",
        "--headless",
        "--profile",
        str(path),
        "--out",
        str(out),
    ]
    t0 = time.time()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    window = None
    if burn is not None:
        time.sleep(burn[0])
        b = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        t_on = time.time()
        time.sleep(burn[1])
        b.kill()
        b.wait()
        window = (t_on, time.time())
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"run failed ({proc.returncode}): {err.decode()[-500:]}")
    summary = json.loads((out / "summary.json").read_text())
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    return {"summary": summary, "rows": rows, "window": window, "seconds": time.time() - t0}


def lowest_score(summary: dict) -> str | None:
    scored = [m for m in summary["modes"] if m.get("score") is not None]
    return min(scored, key=lambda m: m["score"])["mode"] if scored else None


def after_profile(base: P.Profile) -> P.Profile:
    p = P.from_dict(base.to_dict(), source=base.name)
    p.run.order = "auto"
    return p


def agreement(picks: list[str | None]) -> tuple[str | None, int]:
    if not picks:
        return None, 0
    mode, n = Counter(picks).most_common(1)[0]
    return mode, n


def flagged_during(run: dict) -> tuple[int, int]:
    """(steps that ran while the burner burned, how many of them were flagged)."""
    if run["window"] is None:
        return 0, 0
    t_on, t_off = run["window"]
    during = [
        r
        for r in run["rows"]
        if t_on + 0.8 <= datetime.fromisoformat(r["timestamp"]).timestamp() <= t_off
    ]
    return len(during), sum(1 for r in during if r["contaminated"])


def requests(run: dict) -> int:
    return len(run["rows"])


def study(path: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    base = P.load(path)
    base.load.scheduled = False if args.no_load else base.load.scheduled
    if args.foreign_limit is not None:
        base.run.foreign_cpu_limit = args.foreign_limit
    name = path.stem
    res: dict[str, Any] = {"profile": str(path)}
    print(f"== {name}", flush=True)

    ref = after_profile(base)
    ref.run.steps_fixed = ref.run.steps_adaptive = args.reference_rounds
    ref.load.scheduled = False
    r = run_cli(ref, out / f"{name}-reference")
    rec = r["summary"]["recommendation"]
    res["reference"] = {
        "mode": rec["mode"],
        "tied": rec["tied"],
        "reason": rec["reason"],
        "requests": requests(r),
    }
    truth = rec["mode"]
    print(f"   reference ({args.reference_rounds} rounds): {truth}; {rec['reason']}", flush=True)

    def series(label: str, make: Any, pick: Any, burn: Any = None) -> dict[str, Any]:
        runs = []
        for i in range(args.runs):
            run = run_cli(make(), out / f"{name}-{label}-{i + 1}", burn=burn)
            runs.append(run)
        picks = [pick(run["summary"]) for run in runs]
        mode, n = agreement(picks)
        ties = [run["summary"].get("recommendation", {}).get("tied") or [] for run in runs]
        out_: dict[str, Any] = {
            "picks": picks,
            "agree": f"{n}/{len(runs)}",
            "most_common": mode,
            "tie_sets": ties,
            "tie_holds_reference": f"{sum(truth in t for t in ties)}/{len(runs)}",
            "requests": [requests(run) for run in runs],
            "seconds": [round(run["seconds"], 1) for run in runs],
        }
        if burn is not None:
            out_["burn"] = [flagged_during(run) for run in runs]
            out_["excluded_steps"] = [
                run["summary"]["recommendation"]["excluded_steps"] for run in runs
            ]
        print(
            f"   {label}: {picks} agree {out_['agree']}, tie holds {truth}: "
            f"{out_['tie_holds_reference']}" + (f", burn {out_.get('burn')}" if burn else ""),
            flush=True,
        )
        return out_

    def before() -> P.Profile:
        p = after_profile(base)
        p.run.order = "sequential"
        return p

    res["before"] = series("before", before, lowest_score)
    res["after"] = series(
        "after", lambda: after_profile(base), lambda s: s["recommendation"]["mode"]
    )
    if args.burner:
        total = statistics.median(res["after"]["seconds"])

        def burner() -> P.Profile:
            p = after_profile(base)
            p.run.foreign_cpu_limit = P.load(path).run.foreign_cpu_limit
            return p

        res["burner"] = series(
            "burner",
            burner,
            lambda s: s["recommendation"]["mode"],
            burn=(total * 0.4, min(args.burn_s, total * 0.3)),
        )
    if args.decided:

        def decided() -> P.Profile:
            p = after_profile(base)
            p.run.until = "decided"
            p.run.max_rounds = args.max_rounds
            return p

        res["decided"] = series("decided", decided, lambda s: s["recommendation"]["mode"])
        res["budgets"] = {}
        for budget in args.budgets:

            def fixed_budget(b: int = budget) -> P.Profile:
                p = after_profile(base)
                p.run.steps_fixed = p.run.steps_adaptive = b
                return p

            res["budgets"][str(budget)] = series(
                f"budget{budget}", fixed_budget, lambda s: s["recommendation"]["mode"]
            )
    return res


def recompute(out: Path) -> dict[str, Any]:
    """Every run folder of an earlier measurement in OUT, its recommendation recomputed from
    its results.csv with the code as it is now (what `report` on that run says today): for a
    change to how the recommendation is picked, measured on the same runs. The burner's flag
    counts and the requests per run do not depend on the pick; they stay in stability.json."""
    from halospec_tui.core.results import load_rows, summarize_rows

    res: dict[str, Any] = {}
    for ref in sorted(out.glob("*-reference")):
        name = ref.name[: -len("-reference")]

        def rec_of(run: Path) -> dict[str, Any]:
            s = summarize_rows(load_rows(run / "results.csv"), P.load(run / "profile.toml"))
            return s["recommendation"]

        ref_rec = rec_of(ref)
        truth = ref_rec["mode"]
        entry: dict[str, Any] = {"reference": {"mode": truth, "tied": ref_rec["tied"]}}
        print(f"== {name}: reference {truth}", flush=True)
        labels = sorted(
            {p.name[len(name) + 1 :].rsplit("-", 1)[0] for p in out.glob(f"{name}-*-[0-9]*")}
            - {"reference"}
        )
        for label in labels:
            runs = sorted(
                (p for p in out.glob(f"{name}-{label}-[0-9]*") if p.is_dir()),
                key=lambda p: int(p.name.rsplit("-", 1)[1]),
            )
            recs = [rec_of(r) for r in runs]
            picks = [r["mode"] for r in recs]
            mode, n = agreement(picks)
            entry[label] = {
                "picks": picks,
                "agree": f"{n}/{len(runs)}",
                "most_common": mode,
                "tie_sets": [r["tied"] for r in recs],
                "tie_holds_reference": f"{sum(truth in r['tied'] for r in recs)}/{len(runs)}",
            }
            print(f"   {label}: {picks} agree {n}/{len(runs)}", flush=True)
        res[name] = entry
    return res


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--profiles", nargs="+", default=["profiles/default.toml", "profiles/quick.toml"]
    )
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--reference-rounds", type=int, default=200)
    ap.add_argument("--burner", action="store_true")
    ap.add_argument("--burn-s", type=float, default=8.0)
    ap.add_argument("--decided", action="store_true")
    ap.add_argument("--max-rounds", type=int, default=100)
    ap.add_argument("--budgets", type=int, nargs="+", default=[20, 40])
    ap.add_argument("--no-load", action="store_true", help="switch the profiles' load schedule off")
    ap.add_argument(
        "--foreign-limit",
        type=float,
        metavar="PCT",
        help="run.foreign_cpu_limit for every run (0 = no foreign-CPU check: for a machine "
        "shared with other jobs, where every step would be flagged); the burner series keeps "
        "the profile's own limit",
    )
    ap.add_argument("--out", required=True)
    ap.add_argument(
        "--recompute",
        action="store_true",
        help="run nothing: recompute every run's recommendation in OUT with today's code "
        "(into OUT/recomputed.json); the 'before' series' pick is recomputed too, for its tie "
        "sets (its own winner, the lowest score, is in stability.json)",
    )
    args = ap.parse_args()
    out = Path(args.out)
    if args.recompute:
        res = recompute(out)
        (out / "recomputed.json").write_text(json.dumps(res, indent=2) + "\n")
        print(f"results: {out / 'recomputed.json'}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    results = {"args": vars(args), "started": datetime.now().isoformat(timespec="seconds")}
    for prof in args.profiles:
        results[Path(prof).stem] = study(ROOT / prof, args, out)
        (out / "stability.json").write_text(json.dumps(results, indent=2) + "\n")
    results["finished"] = datetime.now().isoformat(timespec="seconds")
    (out / "stability.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out / 'stability.json'}")
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda a: None
    sys.exit(main())
