"""Child processes that never outlive the harness.

Every process the harness starts (load burners, the embedded engine, llama-server) goes
through `spawn`. Three layers make sure none is left behind:
1. `Child.stop` / `stop_all` on every orderly exit path (normal end, q, Ctrl+C, SIGTERM,
   exceptions; `stop_all` is registered with atexit);
2. children start in their own session, so a terminal Ctrl+C reaches only the harness, which
   then stops them in order instead of racing them;
3. if the harness is killed outright (SIGKILL), each child notices its parent is gone: our own
   Python children call `watch_parent`, and foreign programs (llama-server) run under a small
   guard process (`python -m halospec_tui.procs.guard`) that polls the parent and kills its
   child, which in turn has PR_SET_PDEATHSIG set to die with the guard.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

from halospec_tui.exitcodes import ExitCode
from halospec_tui.procs.parent import POLL_S, parent_gone

_children: set[Child] = set()
_lock = threading.Lock()
_spawned = 0  # children started so far: who keeps a list of our processes knows it is stale


class Child:
    """A started process, tracked until stopped."""

    def __init__(self, popen: subprocess.Popen[Any], name: str) -> None:
        self.popen = popen
        self.name = name

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 3.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        p = self.popen
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout)
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()
        with _lock:
            _children.discard(self)
        return p.returncode


def spawn(
    cmd: Sequence[str],
    *,
    name: str,
    guard: bool = False,
    env: dict[str, str] | None = None,
    stdout: int | IO[Any] | None = subprocess.DEVNULL,
    stderr: int | IO[Any] | None = subprocess.DEVNULL,
    cwd: str | None = None,
) -> Child:
    """Start `cmd` as a tracked child. `guard=True` wraps programs that cannot watch us."""
    argv = list(cmd)
    if guard:
        argv = [sys.executable, "-m", "halospec_tui.procs.guard", str(os.getpid()), "--", *argv]
    popen = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
    )
    child = Child(popen, name)
    global _spawned
    with _lock:
        _children.add(child)
        _spawned += 1
    return child


def spawned() -> int:
    """How many children spawn() has started in this process (a cheap staleness check)."""
    return _spawned


def python_child_cmd(module: str, *args: str) -> list[str]:
    """Command line for one of our own modules, told who its parent is."""
    return [sys.executable, "-m", module, "--parent-pid", str(os.getpid()), *args]


def stop_all(timeout: float = 3.0) -> None:
    with _lock:
        children = list(_children)
    for c in children:
        with contextlib.suppress(ProcessLookupError):
            if c.alive():
                c.popen.terminate()
    for c in children:
        c.stop(timeout)


def live_children() -> list[Child]:
    with _lock:
        return [c for c in _children if c.alive()]


atexit.register(stop_all)


# --- child side ----------------------------------------------------------------------------


def watch_parent(parent_pid: int, on_gone: Any = None) -> threading.Thread:
    """In a child: exit as soon as the parent is gone (a daemon thread polls)."""

    def loop() -> None:
        while not parent_gone(parent_pid):
            time.sleep(POLL_S)
        if on_gone is not None:
            with contextlib.suppress(Exception):
                on_gone()
        os._exit(ExitCode.OK)

    t = threading.Thread(target=loop, daemon=True, name="watch-parent")
    t.start()
    return t


def set_pdeathsig(sig: int = signal.SIGKILL) -> None:
    """Linux: ask the kernel to send `sig` when the parent thread dies (a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
