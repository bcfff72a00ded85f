"""CPU load injection: one burner process per core, always stopped.

`LoadInjector` starts `python -m halospec_tui.procs.burn` once per core through
`procs.children.spawn`, so the burners are covered by every cleanup layer of `procs` (explicit
stop, atexit `stop_all`, and each burner exiting on its own within ~50 ms once the harness is gone, even
after SIGKILL). `CpuSampler` reads the machine's CPU use without blocking.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import psutil

from halospec_tui.procs.children import Child, python_child_cmd, spawn, spawned

log = logging.getLogger(__name__)

BURN_MODULE = "halospec_tui.procs.burn"

OnChange = Callable[[bool, bool, float | None], None]


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask where known), at least 1."""
    with contextlib.suppress(AttributeError, OSError):
        n = len(os.sched_getaffinity(0))
        if n > 0:
            return n
    return psutil.cpu_count(logical=True) or os.cpu_count() or 1


class LoadInjector:
    """Burns `cores` cores (0 = every core) in separate processes while on.

    Every method and property is thread-safe. `on_change(on, scheduled, duration_s)` is called
    with no lock held after each actual state change (start, stop, the automatic stop of a
    timed run); for a stop it carries the `scheduled`/`duration_s` of the run that ended.
    Notifications are delivered in order; when two threads change the state at once, the
    second's notification may be delivered by the first thread.
    """

    def __init__(self, cores: int = 0, on_change: OnChange | None = None) -> None:
        if cores < 0:
            raise ValueError(f"cores must be >= 0, got {cores}")
        self._cores = cores if cores > 0 else cpu_cores()
        self._on_change = on_change
        self._lock = threading.Lock()
        self._children: list[Child] = []
        self._on = False
        self._scheduled = False
        self._duration: float | None = None
        self._started_at: float | None = None
        self._timer: threading.Timer | None = None
        self._run = 0  # bumped on every start, so a late timer never stops a newer run
        self._events: collections.deque[tuple[bool, bool, float | None]] = collections.deque()
        self._notify_lock = threading.Lock()

    # --- state -----------------------------------------------------------------------------

    @property
    def cores(self) -> int:
        return self._cores

    @property
    def on(self) -> bool:
        with self._lock:
            return self._on

    @property
    def scheduled(self) -> bool:
        """Whether the current run was started by the schedule (False when off)."""
        with self._lock:
            return self._on and self._scheduled

    @property
    def duration_s(self) -> float | None:
        """The current run's duration, None when untimed or off."""
        with self._lock:
            return self._duration if self._on else None

    @property
    def started_at(self) -> float | None:
        """`time.monotonic()` when the current run started; None when off."""
        with self._lock:
            return self._started_at if self._on else None

    @property
    def elapsed_s(self) -> float:
        """Seconds since the current run started; 0.0 when off."""
        with self._lock:
            if not self._on or self._started_at is None:
                return 0.0
            return time.monotonic() - self._started_at

    @property
    def remaining_s(self) -> float | None:
        """Seconds until a timed run stops itself; None when untimed or off."""
        with self._lock:
            if not self._on or self._duration is None or self._started_at is None:
                return None
            return max(0.0, self._duration - (time.monotonic() - self._started_at))

    @property
    def starts(self) -> int:
        """How many times the load was started: a change tells that it came on since (even
        if it has gone off again)."""
        with self._lock:
            return self._run

    @property
    def pids(self) -> list[int]:
        """Pids of the running burners."""
        with self._lock:
            return [c.pid for c in self._children if c.alive()]

    # --- control ---------------------------------------------------------------------------

    def start(self, duration_s: float | None = None, scheduled: bool = False) -> bool:
        """Start one burner per core; with `duration_s`, stop after it. False if already on."""
        if duration_s is not None and not duration_s > 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s}")
        with self._lock:
            if self._on:
                return False
            children: list[Child] = []
            try:
                for i in range(self._cores):
                    children.append(spawn(python_child_cmd(BURN_MODULE), name=f"load-burner-{i}"))
            except BaseException:
                _stop_children(children)
                raise
            self._children = children
            self._on = True
            self._scheduled = scheduled
            self._duration = duration_s
            self._started_at = time.monotonic()
            self._run += 1
            if duration_s is not None:
                timer = threading.Timer(duration_s, self._auto_stop, args=(self._run,))
                timer.daemon = True  # never hold up interpreter exit
                timer.name = "load-timer"
                self._timer = timer
                timer.start()
            self._events.append((True, scheduled, duration_s))
        self._notify()
        return True

    def stop(self) -> bool:
        """Stop every burner and wait for them to exit. False if already off."""
        return self._stop(None)

    def toggle(self) -> bool:
        """Start (untimed, unscheduled) if off, else stop; returns the new state."""
        with self._lock:
            on = self._on
        if on:
            self.stop()
        else:
            self.start()
        return self.on

    def close(self) -> None:
        """Stop the burners and cancel any timer."""
        self.stop()
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def __enter__(self) -> LoadInjector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------------

    def _auto_stop(self, run: int) -> None:
        self._stop(run)

    def _stop(self, run: int | None) -> bool:
        with self._lock:
            if not self._on or (run is not None and run != self._run):
                return False
            if self._timer is not None:
                if run is None:
                    self._timer.cancel()
                self._timer = None
            children, self._children = self._children, []
            try:
                _stop_children(children)
            finally:
                self._on = False
                self._events.append((False, self._scheduled, self._duration))
                self._started_at = None
        self._notify()
        return True

    def _notify(self) -> None:
        """Deliver queued notifications in order, from one thread at a time, with no lock."""
        while self._events:
            if not self._notify_lock.acquire(blocking=False):
                return  # the thread holding it delivers ours too
            try:
                while True:
                    try:
                        event = self._events.popleft()
                    except IndexError:
                        break
                    if self._on_change is not None:
                        try:
                            self._on_change(*event)
                        except Exception:
                            log.exception("load on_change callback failed")
            finally:
                self._notify_lock.release()


def _stop_children(children: list[Child]) -> None:
    """SIGTERM all at once, then wait for (and if need be kill) each."""
    for c in children:
        with contextlib.suppress(ProcessLookupError, OSError):
            if c.alive():
                c.popen.terminate()
    for c in children:
        c.stop()


class CpuSampler:
    """Machine-wide CPU %, non-blocking: each `sample()` covers the time since the previous one.

    The first call primes the counter and returns 0.0 (psutil's `cpu_percent(interval=None)`
    semantics, but with its own baseline, so several samplers do not disturb each other).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: Any = None

    def sample(self) -> float:
        with self._lock:
            now = psutil.cpu_times()
            last, self._last = self._last, now
        if last is None:
            return 0.0
        return _busy_percent(last, now)


def _busy_percent(t1: Any, t2: Any) -> float:
    """psutil's own formula: busy share of all CPU time between two `cpu_times()`."""

    def split(t: Any) -> tuple[float, float]:
        fields = t._asdict()
        total = sum(fields.values())
        # guest time is already counted in user/nice on Linux
        total -= fields.get("guest", 0.0) + fields.get("guest_nice", 0.0)
        idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
        return total - idle, total

    busy1, all1 = split(t1)
    busy2, all2 = split(t2)
    d_all = all2 - all1
    if d_all <= 0:
        return 0.0
    d_busy = busy2 - busy1
    return round(max(0.0, min(100.0, d_busy / d_all * 100.0)), 1)


class ForeignCpu:
    """CPU use on this machine by processes that are neither the harness nor the server.

    foreign = the machine's busy CPU time − this process and every descendant (the embedded
    engine, managed llama-servers, the load burners) − the server's processes when it is a
    local process the harness did not start (found once by its listening port). A step that
    met foreign CPU met someone else's job: it is flagged, and the recommendation leaves it
    out. Values are percent of one core (100 = one core busy all the time).

    `mark(since)` returns the foreign CPU over the step that started at `since` (a
    time.monotonic() value): from the last snapshot taken at or before the step's start and
    at least `min_window_s` back, so a short step is judged over a window long enough for the
    kernel's 10 ms accounting ticks not to look like load. A snapshot (a few /proc reads,
    about 0.1 ms a process) is taken at most every `min_window_s / 2`: a fast sweep pays for
    one every few steps, not two per step.
    """

    def __init__(
        self,
        other_pids: list[int] | None = None,
        *,
        min_window_s: float = 0.5,
        refresh_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._me = psutil.Process()
        self._other = [p for p in (other_pids or []) if p != self._me.pid]
        self._min_window = min_window_s
        self._refresh = refresh_s
        self._clock = clock
        self._procs: list[psutil.Process] = []
        self._procs_at = -1e9
        self._spawns = -1
        self._hist: collections.deque[tuple[float, float, float]] = collections.deque(maxlen=64)
        self._lock = threading.Lock()

    def watch(self, pids: list[int]) -> None:
        """Also count these processes (and their children) as the server's, not foreign."""
        with self._lock:
            self._other = [p for p in pids if p != self._me.pid]
            self._procs_at = -1e9

    def _tree(self, now: float) -> list[psutil.Process]:
        # listed again every refresh_s, and at once when this process has started a child
        # since (a burner the load key starts is ours from its first tick, not someone
        # else's job for up to refresh_s: measured, 11 steps of a scheduled load flagged)
        if now - self._procs_at >= self._refresh or spawned() != self._spawns:
            self._spawns = spawned()
            procs: dict[int, psutil.Process] = {}
            with contextlib.suppress(psutil.Error):
                procs.update((p.pid, p) for p in self._me.children(recursive=True))
            for pid in self._other:
                with contextlib.suppress(psutil.Error):
                    p = psutil.Process(pid)
                    procs.update((c.pid, c) for c in [p, *p.children(recursive=True)])
            procs.pop(self._me.pid, None)
            self._procs, self._procs_at = list(procs.values()), now
        return self._procs

    def _ours(self, now: float) -> float:
        t = self._me.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for p in self._tree(now):
            with contextlib.suppress(psutil.Error):
                c = p.cpu_times()
                # with its reaped children's: a llama-server that exits under its guard
                # moves its CPU time to the guard's children_*, where it stays ours
                total += c.user + c.system + c.children_user + c.children_system
        return total

    @staticmethod
    def _machine() -> float:
        t = psutil.cpu_times()._asdict()
        busy = sum(t.values()) - t.get("idle", 0.0) - t.get("iowait", 0.0)
        return busy - t.get("guest", 0.0) - t.get("guest_nice", 0.0)

    def mark(self, since: float | None = None) -> float | None:
        """The foreign CPU (% of one core) from a snapshot at or before `since` (default:
        now) and at least min_window_s back, to the latest snapshot (taken now unless one is
        fresh); None until there are two snapshots."""
        with self._lock:
            now = self._clock()
            last = self._hist[-1] if self._hist else None
            if last is None or now - last[0] >= self._min_window / 2:
                try:
                    last = (now, self._machine(), self._ours(now))
                except psutil.Error:
                    return None
                self._hist.append(last)
            start = last[0] if since is None else min(since, last[0])
            base = None
            for s in reversed(self._hist):
                base = s
                if s[0] <= start and last[0] - s[0] >= self._min_window:
                    break
        if base is None or last[0] - base[0] <= 0:
            return None
        foreign = (last[1] - base[1]) - (last[2] - base[2])
        return round(max(0.0, foreign / (last[0] - base[0]) * 100.0), 1)


def local_server_pids(url: str) -> list[int] | None:
    """PIDs listening on a loopback URL's port ([] for a remote host: its CPU is not this
    machine's; None when the host is local but its process cannot be seen)."""
    import ipaddress
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    local = host in ("localhost", "") or host.endswith(".localhost")
    with contextlib.suppress(ValueError):
        local = local or ipaddress.ip_address(host).is_loopback
    if not local:
        return []
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    pids = sorted(
        {
            c.pid
            for c in conns
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
        }
    )
    return pids or None
