"""Time bounds against faulty servers, measured with the real command in child processes.

* stop: a server that answers N requests and then never answers (timeout_s 60): the time
  from Ctrl+C (SIGINT), SIGTERM or the monitor's `q` to the process's exit, headless and
  with the monitor (on a pseudo-terminal), and whether the rows were kept;
* deadline: a server that drips its reply a byte per 0.1 s, timeout_s 2: the time from the
  request to its failed row (the whole reply would take 20+ s).

    python benchmarks/faulty_server_bounds.py [--repeat 5]

Run from the repository root (it uses tests/faulty.py, the tests' faulty server). Prints
measurements only: the bounds are documented in docs/reliability.md, never test thresholds.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faulty import FaultyServer, chat, drip, json_body  # noqa: E402
from tests.helpers import ok_reply  # noqa: E402
from tests.test_faulty_server import (  # noqa: E402
    CLI,
    _env,
    _hanging_after,
    _profile,
    _pty_child,
    _rows,
    _wait_rows,
)


def stop_once(how: str, monitor: bool, stream: bool) -> tuple[float, int, int]:
    """(seconds from the stop to the exit, exit code, rows on disk)."""
    with tempfile.TemporaryDirectory() as d, FaultyServer(chat(_hanging_after(3, stream))) as srv:
        tmp = Path(d)
        out = tmp / "run"
        prof = _profile(tmp, srv.url, steps=50, timeout_s=60.0, stream=stream)
        args = [
            *CLI,
            *([] if monitor else ["--headless"]),
            "--profile",
            str(prof),
            "--out",
            str(out),
        ]
        master = None
        if monitor:
            proc, master, _ = _pty_child(args)
        else:
            proc = subprocess.Popen(
                args, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        try:
            _wait_rows(out, 3)
            while len(srv.posts) < 4:
                time.sleep(0.02)
            time.sleep(0.3)  # the fourth request is in flight, unanswered
            t0 = time.monotonic()
            if how == "q":
                assert master is not None
                os.write(master, b"q")
            else:
                proc.send_signal(signal.SIGINT if how == "SIGINT" else signal.SIGTERM)
            proc.wait(timeout=60)
            took = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if master is not None:
                os.close(master)
        return took, proc.returncode, len(_rows(out))


def deadline_once() -> tuple[float, str]:
    """(seconds the dripped step took, its error), headless, timeout_s 2."""
    with tempfile.TemporaryDirectory() as d:
        srv = FaultyServer(chat(lambda n: drip(json_body(ok_reply()), 0.1)))
        try:
            tmp = Path(d)
            out = tmp / "run"
            prof = _profile(tmp, srv.url, steps=1, timeout_s=2.0, stream=False)
            proc = subprocess.Popen(
                [*CLI, "--headless", "--profile", str(prof), "--out", str(out)],
                cwd=ROOT,
                env=_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            while not srv.posts:
                time.sleep(0.005)
            t0 = srv.posts[0].at
            _wait_rows(out, 1, timeout=60)
            took = time.monotonic() - t0
            proc.wait(timeout=60)
            return took, _rows(out)[0]["error"]
        finally:
            srv.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    cases = [
        ("headless", "SIGINT", False, True),
        ("headless", "SIGTERM", False, True),
        ("monitor", "q", True, False),
        ("monitor", "SIGINT", True, False),
        ("monitor", "SIGTERM", True, False),
    ]
    for ui, how, monitor, stream in cases:
        runs = [stop_once(how, monitor, stream) for _ in range(a.repeat)]
        times = [t for t, _, _ in runs]
        print(
            f"stop {ui:8} {how:7}: exit after median {statistics.median(times):.2f} s, "
            f"max {max(times):.2f} s over {len(runs)} runs; exit codes "
            f"{sorted({c for _, c, _ in runs})}, rows kept {sorted({n for _, _, n in runs})} "
            "(3 answered + 1 interrupted)",
            flush=True,
        )
    runs = [deadline_once() for _ in range(a.repeat)]
    times = [t for t, _ in runs]
    print(
        f"deadline (drip, timeout_s 2): failed row after median {statistics.median(times):.2f} s, "
        f"max {max(times):.2f} s over {len(runs)} runs; errors {sorted({e for _, e in runs})}"
    )


if __name__ == "__main__":
    main()
