"""procs.spawn / Child.stop / stop_all and the guard for foreign children, with real processes.

Every wait polls against a deadline, so the tests hold on a loaded 2-core machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import psutil
import pytest

from halospec_tui.procs import children as procs
from halospec_tui.procs.parent import parent_gone

GONE_S = 3.0  # a child must be gone this soon after its harness is
START_S = 10.0  # generous: starting Python on a busy machine
SLEEP = ["sleep", "1000"]


def wait_until(pred: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def gone(pid: int) -> bool:
    """Not running: no such pid, or a zombie waiting to be reaped."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def guarded_pid(guard_pid: int) -> int:
    """The pid of the program a guard runs (waits for the guard to start it)."""
    found: list[int] = []

    def started() -> bool:
        try:
            kids = psutil.Process(guard_pid).children()
        except psutil.NoSuchProcess:
            return False
        kids = [k for k in kids if _cmd(k) == SLEEP]
        found[:] = [k.pid for k in kids]
        return bool(found)

    assert wait_until(started, START_S), "the guard did not start its program"
    return found[0]


def _cmd(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return []


def kill_quietly(*pids: int) -> None:
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                p.kill()
        except psutil.NoSuchProcess:
            pass


def test_spawn_tracks_and_stop_untracks() -> None:
    c = procs.spawn(SLEEP, name="sleep")
    try:
        assert c.alive() and c.name == "sleep"
        assert c in procs.live_children()
        assert os.getsid(c.pid) == c.pid  # its own session: a terminal ^C reaches only us
        assert c.stop() == -signal.SIGTERM
        assert not c.alive() and gone(c.pid)
        assert c not in procs.live_children()
        assert c.stop() == -signal.SIGTERM  # idempotent
    finally:
        kill_quietly(c.pid)


def test_stop_kills_a_child_that_ignores_sigterm() -> None:
    c = procs.spawn(
        ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"],
        name="stubborn",
        stdout=subprocess.PIPE,
    )
    try:
        assert c.popen.stdout is not None
        assert c.popen.stdout.readline() == b"ready\n"
        assert c.stop(timeout=0.3) == -signal.SIGKILL
        assert gone(c.pid)
    finally:
        kill_quietly(c.pid)


def test_guard_child_stop_ends_guard_and_program() -> None:
    c = procs.spawn(SLEEP, name="guarded-sleep", guard=True)
    sleep_pid = -1
    try:
        guard = psutil.Process(c.pid)
        # Between fork and exec a child's cmdline is empty: wait until it runs the guard.
        assert wait_until(lambda: "halospec_tui.procs.guard" in " ".join(_cmd(guard)), START_S)
        sleep_pid = guarded_pid(c.pid)
        c.stop()
        assert gone(c.pid)
        assert wait_until(lambda: gone(sleep_pid), GONE_S), "guarded program outlived stop()"
        assert c not in procs.live_children()
    finally:
        kill_quietly(c.pid, sleep_pid)


def test_guard_passes_on_exit_code() -> None:
    c = procs.spawn(["sh", "-c", "exit 3"], name="three", guard=True)
    try:
        assert c.popen.wait(START_S) == 3
    finally:
        c.stop()


def test_guard_reports_a_missing_program() -> None:
    c = procs.spawn(
        ["/nonexistent/halospec-no-such-program"],
        name="missing",
        guard=True,
        stderr=subprocess.PIPE,
    )
    try:
        assert c.popen.wait(START_S) == 127
        assert c.popen.stderr is not None
        assert b"cannot start" in c.popen.stderr.read()
    finally:
        c.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_guarded_program_dies_with_a_killed_guard() -> None:
    c = procs.spawn(SLEEP, name="guarded-sleep", guard=True)
    sleep_pid = -1
    try:
        sleep_pid = guarded_pid(c.pid)
        os.kill(c.pid, signal.SIGKILL)
        assert wait_until(lambda: gone(sleep_pid), GONE_S), "no PDEATHSIG: program outlived guard"
    finally:
        c.stop()
        kill_quietly(sleep_pid)


# A harness-like process: starts a guarded `sleep 1000` and a plain Python child that
# watches it, prints their pids, then waits to be SIGKILLed (no cleanup can run).
HARNESS = textwrap.dedent(
    """
    import sys, time
    from halospec_tui.procs import children as procs

    guard = procs.spawn(["sleep", "1000"], name="guarded-sleep", guard=True)
    watcher = procs.spawn(
        procs.python_child_cmd("halospec_tui.procs.burn"), name="burner"
    )
    print(guard.pid, watcher.pid, flush=True)
    while True:
        time.sleep(0.05)
    """
)


def test_sigkill_of_the_harness_ends_its_children() -> None:
    h = subprocess.Popen(
        [sys.executable, "-c", HARNESS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    guard_pid = sleep_pid = watcher_pid = -1
    try:
        assert h.stdout is not None
        line = h.stdout.readline()
        assert line, h.communicate(timeout=START_S)
        guard_pid, watcher_pid = map(int, line.split())
        sleep_pid = guarded_pid(guard_pid)
        h.kill()
        h.wait(START_S)
        assert wait_until(lambda: gone(sleep_pid), GONE_S), "guarded program outlived the harness"
        assert wait_until(lambda: gone(guard_pid), GONE_S), "guard outlived the harness"
        assert wait_until(lambda: gone(watcher_pid), GONE_S), "python child outlived the harness"
    finally:
        if h.poll() is None:
            h.kill()
            h.wait()
        kill_quietly(sleep_pid, guard_pid, watcher_pid)


# stop_all runs in its own process, so it cannot touch children of other tests' fixtures.
STOP_ALL = textwrap.dedent(
    """
    import sys
    from halospec_tui.procs import children as procs

    started = [
        procs.spawn(["sleep", "1000"], name="plain-sleep"),
        procs.spawn(["sleep", "1000"], name="guarded-sleep", guard=True),
        procs.spawn(procs.python_child_cmd("halospec_tui.procs.burn"), name="burner"),
    ]
    print(*[c.pid for c in started], flush=True)
    sys.stdin.readline()  # the test has seen them all running
    procs.stop_all()
    assert procs.live_children() == [], procs.live_children()
    assert all(not c.alive() for c in started)
    print("stopped", flush=True)
    sys.stdin.readline()
    """
)


def test_stop_all_stops_everything() -> None:
    h = subprocess.Popen(
        [sys.executable, "-c", STOP_ALL],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pids: list[int] = []
    sleep_pid = -1
    try:
        assert h.stdin is not None and h.stdout is not None
        line = h.stdout.readline()
        assert line, h.communicate(timeout=START_S)
        pids = [int(x) for x in line.split()]
        sleep_pid = guarded_pid(pids[1])
        assert not any(gone(p) for p in [*pids, sleep_pid])
        h.stdin.write("go\n")
        h.stdin.flush()
        assert h.stdout.readline() == "stopped\n", h.communicate(timeout=START_S)
        # the harness is still running: stop_all itself ended them all
        assert h.poll() is None
        assert all(gone(p) for p in pids)
        assert wait_until(lambda: gone(sleep_pid), GONE_S)
        h.stdin.write("end\n")
        h.stdin.flush()
        assert h.wait(START_S) == 0
    finally:
        if h.poll() is None:
            h.kill()
            h.wait()
        kill_quietly(*pids, sleep_pid)


def test_parent_gone() -> None:
    assert parent_gone(os.getppid()) is False
    assert parent_gone(os.getpid()) is True  # not our parent


def test_python_child_cmd() -> None:
    cmd = procs.python_child_cmd("halospec_tui.procs.burn", "--x")
    assert cmd == [
        sys.executable,
        "-m",
        "halospec_tui.procs.burn",
        "--parent-pid",
        str(os.getpid()),
        "--x",
    ]
