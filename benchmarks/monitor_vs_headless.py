"""Step latency with the live monitor against `--headless` on the same profile.

Goal (issue 3): the medians within 2 %. A monitor that perturbs the contention experiment it
watches is a defect. Prints measurements only, no pass/fail.

How: the real CLI runs the same profile on the embedded engine, alternately headless
(`halospec-tui --headless`) and with the monitor (`halospec-tui` in a 120x40 tmux pane; q is
sent once the last row is written), `--repeats` pairs of runs back to back, in the order
H M, M H, H M ... so slow drift of the machine hits both sides alike. Reported: the median of
the successful steps' latency_ms per run, the difference within each pair and the median of
those (robust to a busy shared machine, where the load changes between pairs), and the
pooled medians per mode.

    python benchmarks/monitor_vs_headless.py              # 4 pairs, a few minutes
    python benchmarks/monitor_vs_headless.py --repeats 5 --steps 60
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from halospec_tui.core.results import load_rows  # noqa: E402
from halospec_tui.profile import embedded_default  # noqa: E402


def write_profile(path: Path, steps: int, modes: list[str]) -> int:
    p = embedded_default()
    p.name = "bench-latency"
    p.run.modes = modes
    p.run.warmup = 2
    p.run.warmup_interval_s = 0.05
    p.run.cooldown_s = 0.05
    p.run.steps_fixed = steps
    p.run.steps_adaptive = steps
    p.request.max_tokens = 32
    p.save(path)
    return p.total_steps()


def cli() -> list[str]:
    exe = shutil.which("halospec-tui")
    return [exe] if exe else [sys.executable, "-m", "halospec_tui"]


def run_headless(profile: Path, out: Path) -> None:
    subprocess.run(
        [*cli(), "--headless", "--profile", str(profile), "--out", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=900,
    )


def run_monitor(profile: Path, out: Path, total: int) -> None:
    name = "bench-" + uuid.uuid4().hex[:8]
    cmd = " ".join([*cli(), "--profile", str(profile), "--out", str(out)])
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", name, "-x", "120", "-y", "40", cmd], check=True
    )
    csv = out / "results.csv"
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline:
            if csv.exists() and len(load_rows(csv)) >= total:
                break
            if subprocess.run(["tmux", "has-session", "-t", name], capture_output=True).returncode:
                return  # ended on its own (an error)
            time.sleep(0.5)
        time.sleep(1.0)  # let the summary screen come up
        subprocess.run(["tmux", "send-keys", "-t", name, "q"], capture_output=True)
        while (
            time.monotonic() < deadline
            and not subprocess.run(
                ["tmux", "has-session", "-t", name], capture_output=True
            ).returncode
        ):
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def latencies(out: Path) -> dict[str, list[float]]:
    by_mode: dict[str, list[float]] = {}
    for r in load_rows(out / "results.csv"):
        if r.success:
            by_mode.setdefault(r.mode, []).append(r.latency_ms)
    return by_mode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=4, help="pairs of runs (one per side each)")
    ap.add_argument("--steps", type=int, default=20, help="measured steps per mode")
    ap.add_argument("--modes", default="fixed_2,fixed_4,adaptive")
    args = ap.parse_args()
    if not shutil.which("tmux"):
        sys.exit("monitor_vs_headless: needs tmux to give the monitor a real terminal")
    modes = args.modes.split(",")
    order = []
    for i in range(args.repeats):
        order += ["headless", "monitor"] if i % 2 == 0 else ["monitor", "headless"]
    pooled: dict[str, dict[str, list[float]]] = {"headless": {}, "monitor": {}}
    per_run: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="halospec-bench-") as d:
        tmp = Path(d)
        prof = tmp / "bench.toml"
        total = write_profile(prof, args.steps, modes)
        for i, side in enumerate(order):
            out = tmp / f"{i:02d}-{side}"
            t0 = time.monotonic()
            if side == "headless":
                run_headless(prof, out)
            else:
                run_monitor(prof, out, total)
            lat = latencies(out)
            everything = [x for v in lat.values() for x in v]
            for mode, v in lat.items():
                pooled[side].setdefault(mode, []).extend(v)
            per_run.append(
                (
                    side,
                    statistics.median(everything) if everything else float("nan"),
                    time.monotonic() - t0,
                )
            )
    print(
        f"step latency, monitor vs headless: embedded engine, modes {','.join(modes)}, "
        f"{args.steps} steps each, {args.repeats} runs per side, {os.cpu_count()} CPUs"
    )
    diffs = []
    for i in range(0, len(per_run) - 1, 2):
        a, b = per_run[i], per_run[i + 1]
        h, m = (a, b) if a[0] == "headless" else (b, a)
        diff = 100 * (m[1] - h[1]) / h[1]
        diffs.append(diff)
        print(
            f"  pair {i // 2 + 1}: headless {h[1]:8.2f} ms ({h[2]:.0f} s)  "
            f"monitor {m[1]:8.2f} ms ({m[2]:.0f} s)  {diff:+7.2f} %"
        )
    if diffs:
        print(f"  median of the pair differences: {statistics.median(diffs):+.2f} %")
    print(f"  {'mode':<10} {'headless':>10} {'monitor':>10} {'diff':>8}")
    for mode in [*modes, "all"]:
        h = (
            pooled["headless"].get(mode)
            if mode != "all"
            else [x for v in pooled["headless"].values() for x in v]
        )
        m = (
            pooled["monitor"].get(mode)
            if mode != "all"
            else [x for v in pooled["monitor"].values() for x in v]
        )
        if not h or not m:
            print(f"  {mode:<10} (no data)")
            continue
        mh, mm = statistics.median(h), statistics.median(m)
        print(
            f"  {mode:<10} {mh:10.2f} {mm:10.2f} {100 * (mm - mh) / mh:+7.2f} %  (n={len(h)}/{len(m)})"
        )
    print("  goal: pooled medians within 2 %")


if __name__ == "__main__":
    main()
