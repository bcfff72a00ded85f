"""LoadInjector / burner / CpuSampler, with real processes (no mocks).

Every wait polls against a deadline, so the tests hold on a loaded 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import psutil
import pytest

from halospec_tui.core.load import BURN_MODULE, CpuSampler, LoadInjector, cpu_cores
from halospec_tui.procs import children as procs

GONE_S = 3.0  # a burner must be gone this soon after its harness is
START_S = 10.0  # generous: starting Python on a busy machine


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


def all_gone(pids: list[int]) -> Callable[[], bool]:
    return lambda: all(gone(p) for p in pids)


def cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def burning(pids: list[int], min_cpu_s: float = 0.05, timeout: float = START_S) -> bool:
    """Every pid gains `min_cpu_s` of CPU time before `timeout` (cpu_times, robust to load)."""
    base = {p: cpu_s(p) for p in pids}
    return wait_until(lambda: all(cpu_s(p) - base[p] >= min_cpu_s for p in pids), timeout)


def catches_sigterm(pid: int) -> bool:
    """The burner installs SIGINT then SIGTERM handlers: once SIGTERM is caught, both are."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except OSError:
        pass
    return False


def kill_leftovers(pids: list[int]) -> None:
    for p in pids:
        try:
            proc = psutil.Process(p)
            if BURN_MODULE in " ".join(proc.cmdline()):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


@pytest.fixture
def events() -> list[tuple[bool, bool, float | None]]:
    return []


# --- the injector ---------------------------------------------------------------------------


def test_cores_zero_means_every_core() -> None:
    n = cpu_cores()
    assert n >= 1
    assert n <= (os.cpu_count() or n)
    assert LoadInjector().cores == n
    assert LoadInjector(cores=3).cores == 3
    with pytest.raises(ValueError):
        LoadInjector(cores=-1)


def test_start_burns_then_stop_ends_every_burner(events: list) -> None:
    inj = LoadInjector(cores=2, on_change=lambda *a: events.append(a))
    assert not inj.on and inj.pids == [] and inj.started_at is None
    assert inj.elapsed_s == 0.0 and inj.remaining_s is None
    try:
        assert inj.start() is True
        pids = inj.pids
        assert len(pids) == 2 and len(set(pids)) == 2
        for p in pids:
            proc = psutil.Process(p)
            assert proc.ppid() == os.getpid()
            # Right after fork the child's cmdline is empty until it has exec'd: wait for it.
            assert wait_until(lambda q=proc: BURN_MODULE in " ".join(q.cmdline()), START_S), (
                f"burner {p} runs {proc.cmdline()!r}"
            )
            assert {c.pid for c in procs.live_children()} >= {p}
        assert inj.on and not inj.scheduled
        assert inj.started_at is not None and inj.started_at <= time.monotonic()
        assert inj.remaining_s is None
        assert burning(pids), "burners are not using CPU"
        assert inj.elapsed_s > 0

        assert inj.stop() is True
        assert not inj.on and inj.pids == []
        assert all_gone(pids)(), "stop() returned before the burners exited"
        assert not {c.pid for c in procs.live_children()} & set(pids)
        assert events == [(True, False, None), (False, False, None)]
    finally:
        inj.close()
        kill_leftovers(inj.pids)


def test_double_start_and_stop_are_idempotent(events: list) -> None:
    with LoadInjector(cores=1, on_change=lambda *a: events.append(a)) as inj:
        assert inj.stop() is False
        assert inj.start() is True
        pids = inj.pids
        assert len(pids) == 1
        assert inj.start() is False
        assert inj.start(5.0, scheduled=True) is False
        assert inj.pids == pids and not inj.scheduled and inj.remaining_s is None
        assert inj.stop() is True
        assert inj.stop() is False
        assert all_gone(pids)()
    assert events == [(True, False, None), (False, False, None)]


def test_toggle(events: list) -> None:
    with LoadInjector(cores=1, on_change=lambda *a: events.append(a)) as inj:
        assert inj.toggle() is True
        assert inj.on and len(inj.pids) == 1
        pids = inj.pids
        assert inj.toggle() is False
        assert not inj.on and all_gone(pids)()
        assert inj.toggle() is True
        assert inj.pids != pids
    assert not inj.on  # closed by the context manager
    assert [e[0] for e in events] == [True, False, True, False]


def test_timed_start_stops_itself(events: list) -> None:
    done = threading.Event()

    def on_change(on: bool, scheduled: bool, duration: float | None) -> None:
        events.append((on, scheduled, duration))
        if not on:
            done.set()

    with LoadInjector(cores=1, on_change=on_change) as inj:
        assert inj.start(0.4, scheduled=True) is True
        pids = inj.pids
        assert inj.scheduled and inj.duration_s == 0.4
        rem = inj.remaining_s
        assert rem is not None and 0.0 <= rem <= 0.4
        assert done.wait(START_S), "timed load did not stop itself"
        assert not inj.on and inj.remaining_s is None and not inj.scheduled
        assert all_gone(pids)()
        assert inj.elapsed_s == 0.0
        # a fresh run after the automatic stop is not cut short by the old timer
        assert inj.start(60.0) is True
        time.sleep(0.5)
        assert inj.on
    assert events == [
        (True, True, 0.4),
        (False, True, 0.4),
        (True, False, 60.0),
        (False, False, 60.0),
    ]


def test_stop_before_timer_cancels_it(events: list) -> None:
    with LoadInjector(cores=1, on_change=lambda *a: events.append(a)) as inj:
        inj.start(0.3)
        assert inj.stop() is True
        inj.start()  # untimed: the first run's timer must not stop it
        time.sleep(0.6)
        assert inj.on
    assert [e[0] for e in events] == [True, False, True, False]


def test_thread_safety_and_callback_reentry(events: list) -> None:
    """Many threads toggling; a callback that calls back in; notifications alternate."""
    inj: LoadInjector

    def on_change(on: bool, scheduled: bool, duration: float | None) -> None:
        events.append((on, scheduled, duration))
        _ = inj.on, inj.pids, inj.remaining_s  # no deadlock when called back in

    inj = LoadInjector(cores=1, on_change=on_change)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(4):
                inj.toggle()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    inj.close()
    assert not errors
    assert not inj.on and inj.pids == []
    states = [e[0] for e in events]
    assert states and states[0] is True and states[-1] is False
    assert all(a != b for a, b in zip(states, states[1:], strict=False)), states


def test_callback_error_does_not_break_state() -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("ui gone")

    with LoadInjector(cores=1, on_change=boom) as inj:
        assert inj.start() is True
        pids = inj.pids
        assert inj.stop() is True
        assert all_gone(pids)()


def test_bad_duration() -> None:
    with LoadInjector(cores=1) as inj:
        for bad in (0, -1.0):
            with pytest.raises(ValueError):
                inj.start(bad)
        assert not inj.on


def test_cpu_sampler() -> None:
    s = CpuSampler()
    assert s.sample() == 0.0  # primes
    with LoadInjector(cores=1) as inj:
        inj.start()
        assert burning(inj.pids, 0.1)
        v = s.sample()
    assert 0.0 < v <= 100.0
    v2 = s.sample()
    assert 0.0 <= v2 <= 100.0


# --- the burner on its own -------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_burner_quits_quietly_on_signal(sig: signal.Signals) -> None:
    p = subprocess.Popen(
        [sys.executable, "-m", BURN_MODULE, "--parent-pid", str(os.getpid())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_until(lambda: catches_sigterm(p.pid), START_S), "handlers never installed"
        assert burning([p.pid], 0.02)
        p.send_signal(sig)
        out, err = p.communicate(timeout=START_S)
        assert p.returncode == 0
        assert out == b"" and err == b""
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_burner_exits_when_not_its_parents_child() -> None:
    # the pid given is not its parent: as if the parent died before the burner started
    r = subprocess.run(
        [sys.executable, "-m", BURN_MODULE, "--parent-pid", str(os.getpid() + 10**6)],
        capture_output=True,
        timeout=START_S,
    )
    assert r.returncode == 0 and r.stderr == b""


def test_burner_usage_error() -> None:
    r = subprocess.run(
        [sys.executable, "-m", BURN_MODULE, "--parent-pid", "x"],
        capture_output=True,
        timeout=START_S,
    )
    assert r.returncode == 2 and b"usage" in r.stderr


# --- cleanup on every way the harness can end -----------------------------------------------

# A harness-like script: starts two burners, reports their pids, then ends as told. It never
# calls stop()/close() itself: only procs' atexit hook or the burners' parent watch clean up.
# "sigterm" mirrors the CLI, which installs a SIGTERM handler raising SystemExit (so finally
# blocks and atexit run); SIGINT is reset to Python's default KeyboardInterrupt handler in
# case the test runner was started with SIGINT ignored.
SCRIPT = textwrap.dedent(
    """
    import json, signal, sys, time
    import psutil
    from halospec_tui.core.load import LoadInjector

    how = sys.argv[1]

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    if how == "sigterm":
        signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    inj = LoadInjector(cores=2)
    inj.start(None if how != "timed-exit" else 3600.0)
    pids = inj.pids
    assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    print(json.dumps(pids), flush=True)
    if how in ("exit", "timed-exit"):
        sys.exit(0)
    if how == "raise":
        raise RuntimeError("harness crashed")
    while True:
        time.sleep(0.05)
    """
)


@pytest.mark.parametrize(
    ("how", "sig"),
    [
        ("exit", None),
        ("timed-exit", None),
        ("raise", None),
        ("sigterm", signal.SIGTERM),
        ("sigint", signal.SIGINT),
        ("sigkill", signal.SIGKILL),
    ],
)
def test_burners_never_outlive_the_harness(how: str, sig: signal.Signals | None) -> None:
    p = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pids: list[int] = []
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line, f"script printed no pids: {p.communicate(timeout=START_S)}"
        pids = json.loads(line)
        assert len(pids) == 2
        if sig is not None:
            assert burning(pids, 0.02), "burners did not start burning"
            p.send_signal(sig)
        _, err = p.communicate(timeout=START_S)
        t_exit = time.monotonic()
        if how != "sigkill":
            # orderly exits: procs' atexit stop_all stopped and reaped them before the end
            assert all_gone(pids)(), f"atexit did not stop the burners ({how})"
        assert wait_until(all_gone(pids), GONE_S), f"burners outlived the harness ({how})"
        assert time.monotonic() - t_exit < GONE_S + 0.5
        if how in ("exit", "timed-exit"):
            assert p.returncode == 0, err
        elif how == "raise":
            assert p.returncode == 1 and "RuntimeError: harness crashed" in err
        elif how == "sigterm":
            assert p.returncode == 128 + signal.SIGTERM
        elif how == "sigint":
            # an unhandled KeyboardInterrupt ends Python by SIGINT once cleanup has run
            assert p.returncode in (-signal.SIGINT, 1) and "KeyboardInterrupt" in err
        else:
            assert p.returncode == -signal.SIGKILL
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        kill_leftovers(pids)
