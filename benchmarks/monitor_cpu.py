"""The live monitor's own CPU use while a sweep runs at 20 or more steps per second.

Goal (issue 3): under 5 % of one core on average. Prints measurements only, no pass/fail.

How: the same sweep runs twice in a child process, once under the monitor and once headless
(no UI at all). The monitor run happens in a real terminal (a tmux pane, 120x40) when tmux is
installed, else with Textual's headless driver (which renders but writes nothing). In each
child a sampler thread reads per-thread CPU times (psutil) over a window after a short
warm-up. "Non-runner CPU" is every thread of the process except the sweep thread (the runner
and the inline results writer, identical in both runs) and the sampler; the monitor's own
cost is that figure under the monitor, and the headless figure shows what the event bus alone
costs. The default backend answers in-process after a fixed sleep and burns no CPU, so the
numbers are the harness's alone; `--backend embedded` uses the real embedded engine (its CPU
is in a child process and not counted).

    python benchmarks/monitor_cpu.py                 # 20 s windows, ~45 steps/s
    python benchmarks/monitor_cpu.py --step-ms 5     # ~150 steps/s
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from halospec_tui.backends.base import Prompt, Reply  # noqa: E402
from halospec_tui.profile import Profile, embedded_default  # noqa: E402


class SleepBackend:
    """Answers every request after `delay_s` of sleep, with fixed draft counters."""

    kind = "sleep"
    draft_channel = "request"
    model = "sleep-model"
    url = ""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def start(self) -> None:
        pass

    def prepare_mode(self, mode: str, k: int | None) -> None:
        pass

    def complete(self, prompt: Prompt, k: int, *, sequence: str | None = None) -> Reply:
        t0 = time.perf_counter()
        time.sleep(self.delay_s)
        ms = (time.perf_counter() - t0) * 1000.0
        accepted = 20
        return Reply(
            success=True,
            latency_ms=ms,
            tokens=32,
            text="ok",
            predicted_n=32,
            draft_n=k * (32 - accepted - 1),
            draft_n_accepted=accepted,
        )

    def metrics(self) -> dict[str, float] | None:
        return None

    def close(self) -> None:
        pass


def bench_profile(backend: str, steps: int) -> Profile:
    p = embedded_default() if backend == "embedded" else Profile(name="bench-cpu")
    p.name = "bench-cpu"
    p.run.modes = ["fixed_4", "adaptive"]
    p.run.warmup = 2
    p.run.warmup_interval_s = 0.0
    p.run.cooldown_s = 0.0
    p.run.steps_fixed = steps
    p.run.steps_adaptive = steps
    p.request.max_tokens = 8
    return p


def thread_cpu() -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}


class Sampler:
    """Per-thread CPU over a window; `stop()` is called when the window closes."""

    def __init__(
        self, sweep_tid: Any, rows: Any, warmup_s: float, seconds: float, stop: Any
    ) -> None:
        self.sweep_tid, self.rows = sweep_tid, rows
        self.warmup_s, self.seconds, self.stop = warmup_s, seconds, stop
        self.result: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, daemon=True, name="bench-sampler")

    def _run(self) -> None:
        while self.sweep_tid() is None:
            time.sleep(0.02)
        time.sleep(self.warmup_s)
        me = threading.get_native_id()
        main = threading.main_thread().native_id
        c0, r0, w0 = thread_cpu(), self.rows(), time.perf_counter()
        p0 = psutil.Process().cpu_times()
        time.sleep(self.seconds)
        c1, r1, w1 = thread_cpu(), self.rows(), time.perf_counter()
        p1 = psutil.Process().cpu_times()
        wall = w1 - w0
        sweep = self.sweep_tid()

        def d(tid: int) -> float:
            return c1.get(tid, 0.0) - c0.get(tid, 0.0)

        others = sum(d(t) for t in set(c0) | set(c1) if t not in (sweep, me))
        self.result = {
            "wall_s": round(wall, 2),
            "steps_per_s": round((r1 - r0) / wall, 1),
            "process_cpu_pct": round(
                100 * ((p1.user + p1.system) - (p0.user + p0.system)) / wall, 2
            ),
            "sweep_thread_cpu_pct": round(100 * d(sweep) / wall, 2),
            "non_runner_cpu_pct": round(100 * others / wall, 2),
            "main_thread_cpu_pct": round(100 * d(main) / wall, 2),
            "threads": len(c1),
        }
        self.stop()


def child(args: argparse.Namespace) -> None:
    from halospec_tui.session import Session

    backend = SleepBackend(args.step_ms / 1000.0) if args.backend == "sleep" else None
    session = Session.create(bench_profile(args.backend, args.steps), args.out, backend=backend)
    out: dict[str, Any] = {"mode": args.mode, "backend": args.backend}
    if args.mode == "headless":
        holder: dict[str, int] = {}

        def sweep() -> None:
            holder["tid"] = threading.get_native_id()
            session.start_backend()
            session.run()

        session.bus.subscribe(lambda ev: None)  # a queued subscriber, as the CLI's printer
        s = Sampler(
            lambda: holder.get("tid"),
            lambda: session.writer.rows_written,
            args.warmup_s,
            args.seconds,
            session.runner.cancel,
        )
        t = threading.Thread(target=sweep, name="sweep")
        t.start()
        s.thread.start()
        t.join()
        s.thread.join(5)
        session.close()
    else:
        from halospec_tui.tui.app import MonitorApp

        kw = {"refresh_interval": args.refresh} if args.refresh else {}
        app = MonitorApp(session, show_summary=False, **kw)

        def sweep_tid() -> int | None:
            th = app.sweep_thread
            return th.native_id if th is not None else None

        s = Sampler(
            sweep_tid,
            lambda: session.writer.rows_written,
            args.warmup_s,
            args.seconds,
            lambda: app.call_from_thread(app.stop_run, 0),
        )
        s.thread.start()
        app.run(headless=args.headless)
        s.thread.join(5)
        out["terminal"] = "headless driver" if args.headless else "real terminal"
    out.update(s.result)
    Path(args.json).write_text(json.dumps(out))


def run_child(mode: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    js = tmp / f"{mode}.json"
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--mode",
        mode,
        "--json",
        str(js),
        "--out",
        str(tmp / f"run-{mode}"),
        "--backend",
        args.backend,
        "--step-ms",
        str(args.step_ms),
        "--steps",
        str(args.steps),
        "--seconds",
        str(args.seconds),
        "--warmup-s",
        str(args.warmup_s),
        "--refresh",
        str(args.refresh),
    ]
    limit = args.seconds + args.warmup_s + 60
    if mode == "monitor" and shutil.which("tmux") and not args.headless:
        name = "bench-" + uuid.uuid4().hex[:8]
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                "120",
                "-y",
                "40",
                " ".join(shlex.quote(c) for c in cmd),
            ],
            check=True,
        )
        deadline = time.monotonic() + limit
        while not js.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    else:
        if mode == "monitor":
            cmd.append("--headless")
        subprocess.run(cmd, check=True, timeout=limit)
    return json.loads(js.read_text()) if js.exists() else {"mode": mode, "error": "no result"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--mode", choices=("monitor", "headless"), default="monitor", help=argparse.SUPPRESS
    )
    ap.add_argument("--json", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    ap.add_argument("--backend", choices=("sleep", "embedded"), default="sleep")
    ap.add_argument("--step-ms", type=float, default=20.0, help="sleep backend: ms per request")
    ap.add_argument(
        "--steps", type=int, default=100_000, help="steps per mode (the window ends the run)"
    )
    ap.add_argument("--seconds", type=float, default=20.0, help="measured window")
    ap.add_argument("--warmup-s", type=float, default=3.0, help="skipped before the window")
    ap.add_argument(
        "--headless", action="store_true", help="monitor with Textual's headless driver"
    )
    ap.add_argument(
        "--refresh",
        type=float,
        default=0.0,
        help="the monitor's batch interval in s (default: the app's own)",
    )
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="halospec-bench-") as d:
        tmp = Path(d)
        results = [run_child("monitor", args, tmp), run_child("headless", args, tmp)]
    print(
        f"monitor CPU benchmark: backend {args.backend}"
        + (f" ({args.step_ms:g} ms per request)" if args.backend == "sleep" else "")
        + f", {args.seconds:g} s window after {args.warmup_s:g} s, {os.cpu_count()} CPUs"
    )
    keys = (
        "terminal",
        "steps_per_s",
        "non_runner_cpu_pct",
        "main_thread_cpu_pct",
        "sweep_thread_cpu_pct",
        "process_cpu_pct",
        "threads",
        "error",
    )
    for r in results:
        print(f"  {r['mode']:<9} " + "  ".join(f"{k}={r[k]}" for k in keys if k in r))
    mon = next((r for r in results if r["mode"] == "monitor"), {})
    hl = next((r for r in results if r["mode"] == "headless"), {})
    if "non_runner_cpu_pct" in mon and "non_runner_cpu_pct" in hl:
        print(
            f"  monitor's own CPU: {mon['non_runner_cpu_pct']:.2f} % of one core "
            f"({mon['non_runner_cpu_pct'] - hl['non_runner_cpu_pct']:.2f} % above headless) "
            f"at {mon['steps_per_s']} steps/s; goal < 5 %"
        )


if __name__ == "__main__":
    main()
