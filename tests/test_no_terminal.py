"""Without a terminal, and with a reader that leaves: the real command as a child process.

`halospec-tui --profile P </dev/null >log 2>&1 &` used to finish its run in the monitor and
then never exit, keeping a core busy; `halospec-tui --headless ... | head -3` printed over a
hundred BrokenPipeError tracebacks and exited 1. Now: headless, said in one line; a closed
pipe stops the run quietly with 141 (128 + SIGPIPE, what a shell expects of `yes | head`),
every child process stopped and every finished row kept.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.helpers import wait_gone

CLI = [sys.executable, "-m", "halospec_tui"]

TINY = """
name = "tiny"
[run]
modes = ["fixed_1", "fixed_4", "adaptive"]
warmup = 1
warmup_interval_s = 0.0
steps_fixed = 3
steps_adaptive = 4
cooldown_s = 0.0
foreign_cpu_limit = 0.0
[request]
model = "halospec-embedded"
max_tokens = 16
"""

# far longer than any test waits: only a stop ends it, and a CPU burner is a child to stop
LONG = """
[run]
modes = ["fixed_2", "adaptive"]
warmup = 0
steps_fixed = 100000
cooldown_s = 0.0
foreign_cpu_limit = 0.0
[load]
scheduled = true
modes = ["fixed_2"]
start_step = 1
duration_s = 600
cores = 1
"""


def test_no_terminal_runs_headless_and_exits(tmp_path: Path) -> None:
    prof = tmp_path / "tiny.toml"
    prof.write_text(TINY)
    out = tmp_path / "run"
    log = tmp_path / "log"
    with log.open("w") as f:
        proc = subprocess.Popen(
            [*CLI, "--profile", str(prof), "--out", str(out)],  # no --headless
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
        code = proc.wait(timeout=120)  # before: the run finished, the process never did
    text = log.read_text()
    assert code == 0, text
    assert text.splitlines()[0] == "halospec-tui: no terminal: running headless (--headless)"
    assert "Traceback" not in text and "RECOMMENDATION" in text
    assert "\x1b[" not in text  # no terminal drawing went into the file
    assert wait_gone(proc.pid) == []
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 3 + 3 + 4


def test_closed_pipe_stops_the_run_quietly_with_141(tmp_path: Path) -> None:
    prof = tmp_path / "long.toml"
    prof.write_text(LONG)
    out = tmp_path / "run"
    producer = subprocess.Popen(
        [*CLI, "--headless", "--profile", str(prof), "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert producer.stdout is not None
    head = subprocess.run(
        ["head", "-3"], stdin=producer.stdout, capture_output=True, timeout=60, check=True
    )
    producer.stdout.close()  # only head held the pipe's read end: it is gone now
    code = producer.wait(timeout=30)  # the sweep alone would take hours
    stderr = producer.stderr.read().decode() if producer.stderr else ""
    assert len(head.stdout.decode().splitlines()) == 3
    assert code == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert stderr.count("\n") <= 1, stderr
    assert wait_gone(producer.pid) == []  # the engine and the CPU burner stopped
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert all(r["success"] == "1" or r["error"] == "interrupted" for r in rows)


def test_closed_pipe_with_stderr_in_it_too(tmp_path: Path) -> None:
    """`2>&1 | head`: the one line a stop might say has nowhere to go either; still quiet."""
    prof = tmp_path / "long.toml"
    prof.write_text(LONG)
    r = subprocess.run(
        [
            "bash",
            "-c",
            f'"$0" -m halospec_tui --headless --profile "{prof}" --out "{tmp_path / "run"}" '
            '2>&1 | head -2; echo "status ${PIPESTATUS[0]}"',
            sys.executable,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and lines[-1] == "status 141", r.stdout + r.stderr
    assert r.stderr == ""


def test_report_into_a_closed_pipe(tmp_path: Path) -> None:
    from tests.test_report_input import halospec_csv

    path = tmp_path / "r.csv"
    path.write_text(halospec_csv(1))
    r = subprocess.run(
        [
            "bash",
            "-c",
            f'"$0" -m halospec_tui report --text "{path}" | head -1; echo "status ${{PIPESTATUS[0]}}"',
            sys.executable,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.stdout.splitlines()[-1] in ("status 0", "status 141"), r.stdout
    assert r.stderr == ""


def test_closed_stdin_is_no_terminal_either(tmp_path: Path) -> None:
    """`<&-` leaves Python without a sys.stdin at all (None): still headless, no traceback."""
    prof = tmp_path / "tiny.toml"
    prof.write_text(TINY)
    r = subprocess.run(
        ["bash", "-c", f'"$0" -m halospec_tui --profile "{prof}" --out "{tmp_path / "run"}" <&-']
        + [sys.executable],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0] == "halospec-tui: no terminal: running headless (--headless)"
    assert "Traceback" not in r.stderr and "RECOMMENDATION" in r.stdout
