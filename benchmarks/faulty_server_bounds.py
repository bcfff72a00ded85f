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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faulty import FaultyServer, chat, drip, json_body  # noqa: E402
from tests.faulty_cli import (  # noqa: E402
    CLI,
    cli_env,
    cli_profile,
    hanging_after,
    rows,
    stop_while_hanging,
    wait_rows,
)
from tests.helpers import ok_reply  # noqa: E402


def stop_once(how: str, monitor: bool, stream: bool) -> tuple[float, int, int]:
    """(seconds from the stop to the exit, exit code, rows on disk)."""
    with tempfile.TemporaryDirectory() as d, FaultyServer(chat(hanging_after(3, stream))) as srv:
        r = stop_while_hanging(srv, Path(d), n_ok=3, how=how, monitor=monitor, stream=stream)
        return r.took, r.returncode, len(rows(Path(d) / "run"))


def deadline_once() -> tuple[float, str]:
    """(seconds the dripped step took, its error), headless, timeout_s 2."""
    with tempfile.TemporaryDirectory() as d:
        srv = FaultyServer(chat(lambda n: drip(json_body(ok_reply()), 0.1)))
        try:
            tmp = Path(d)
            out = tmp / "run"
            prof = cli_profile(tmp, srv.url, steps=1, timeout_s=2.0, stream=False)
            proc = subprocess.Popen(
                [*CLI, "--headless", "--profile", str(prof), "--out", str(out)],
                cwd=ROOT,
                env=cli_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            while not srv.posts:
                time.sleep(0.005)
            t0 = srv.posts[0].at
            wait_rows(out, 1, timeout=60)
            took = time.monotonic() - t0
            proc.wait(timeout=60)
            return took, rows(out)[0]["error"]
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
