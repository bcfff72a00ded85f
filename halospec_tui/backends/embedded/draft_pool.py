"""The draft pool: the engine's drafting work, split over cores the way ggml's threads split it.

A work unit is a `WORK_DIM` x `WORK_DIM` integer mat-vec whose rows are split over the
`threads` participants of a `DraftPool` (the calling thread plus ``threads - 1`` worker
processes, each pinned to its own core), who meet at a barrier after every unit, as ggml's
threads do after every operation. After each job every participant yields its core once
(``sched_yield``). With the cores to itself that costs nothing; when other processes want
the cores (CPU load) a participant loses its core for a time slice there, and the barrier
makes every other participant wait for it, spinning as ggml's barrier does (burning its own
time slice). That is what makes CPU load expensive for drafting.

The participants share one small memory map (`_Shared`): the job (sequence number, first
unit, unit count), each one's last finished unit, and who sleeps. Sleepers wake on a pipe.
`LocalWork` is the same unit computed on the calling thread alone (the verifier's CPU part).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

WORK_DIM = 128  # one draft work unit: a WORK_DIM x WORK_DIM int64 mat-vec, split over the pool
VERIFY_DIM = 128  # one verify work unit: a VERIFY_DIM x VERIFY_DIM int64 mat-vec, one thread

_WORKER_SRC = r"""
import sys
from halospec_tui.backends.embedded.draft_pool import _worker_main
sys.exit(_worker_main(sys.argv[1:]))
"""
_READY = -1
_QUIT = -2
_BLOCK_POLL_S = 0.002  # a blocked barrier participant re-checks at least this often
_IDLE_POLL_S = 0.05  # an idle worker checks that its parent lives at least this often
# barrier: spin this long for the others, then block until woken. ggml's barrier spins and
# never sleeps; so do we, for up to a scheduler period or two (the cap only keeps a stopped
# participant from pinning a core for ever). That spin is what makes CPU load expensive for
# drafting: a participant that loses its core to another process stalls the others, who burn
# their own time slices spinning for it.
DEFAULT_SPIN_US = 50_000.0
DEFAULT_POLL_US = 200.0  # idle worker: spin this long for the next job (covers the gaps between
# the drafted tokens of one step, not the verify wait), then block


class EngineError(RuntimeError):
    """The engine cannot run (a draft worker died or never started)."""


def default_threads() -> int:
    """Every core this process may run on: the draft pool's default size."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _make_slice(rows: int, seed: int, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.integers(-8, 8, size=(rows, dim), dtype=np.int64)
    x = rng.integers(-8, 8, size=dim, dtype=np.int64)
    return w, x, np.empty(rows, dtype=np.int64)


def _rows(threads: int, index: int, dim: int) -> int:
    base, extra = divmod(dim, threads)
    return max(1, base + (1 if index < extra else 0))


def _cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []


def _pin(cpu: int | None) -> None:
    """Pin the calling process to `cpu` (no-op for None or where unsupported)."""
    if cpu is not None:
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setaffinity(0, {cpu})


# --- shared memory and signalling -----------------------------------------------------------


class _Shared:
    """The pool's shared memory: int64 fields, written by one side each."""

    def __init__(self, mm: mmap.mmap, threads: int) -> None:
        arr = np.frombuffer(mm, dtype=np.int64, count=3 * threads + 3)
        self.slots = arr[:threads]  # [i]: last unit participant i finished (or _READY)
        self.sleeping = arr[threads : 2 * threads]  # [i]: unit i sleeps on; 0 = awake
        self.idle = arr[2 * threads : 3 * threads]  # [i]: 1 while worker i blocks for a job
        self.job = arr[3 * threads :]  # seq, base, units (seq written last)

    @staticmethod
    def size(threads: int) -> int:
        return 8 * (3 * threads + 3)


def _shared_file(size: int) -> tuple[str, mmap.mmap]:
    """A zeroed file of at least `size` bytes (in /dev/shm where writable), mapped; the caller
    unlinks it once the workers have mapped it too."""
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    fd, path = tempfile.mkstemp(prefix="halospec-draft-", dir=shm)
    try:
        os.write(fd, b"\0" * max(4096, size))
        return path, mmap.mmap(fd, 0)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    finally:
        os.close(fd)


_FENCE = threading.Lock()


def _fence() -> None:
    """A full memory barrier (a lock's atomic instruction): a store made before it is
    visible to the other processes before any load made after it. The flag-then-check
    handshakes between processes need one on both sides, or both can miss the other's flag
    (and a worker would sleep through a job until its next poll)."""
    _FENCE.acquire()
    _FENCE.release()


def _wake(fd: int) -> None:
    with contextlib.suppress(BlockingIOError, OSError):
        os.write(fd, b"w")


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError, OSError):
        os.read(fd, 4096)


class _Barrier:
    """Spin-then-block barrier, as seen by participant `me`.

    A participant spins up to `spin_s` for the others (cheap while all of them are on a
    core, like ggml's barrier), then sleeps on its wake pipe; the last to arrive wakes the
    sleepers. A lost wake-up (a benign race) costs at most _BLOCK_POLL_S.
    """

    def __init__(
        self,
        sh: _Shared,
        me: int,
        wake_r: int,
        wake_w: dict[int, int],
        spin_s: float,
        alive: Callable[[], bool],
    ) -> None:
        self.sh = sh
        self.slots = sh.slots
        self.me = me
        self.others = [j for j in range(len(sh.slots)) if j != me]
        self.wake_r = wake_r
        self.wake_w = wake_w
        self.spin_s = spin_s
        self.alive = alive

    def _done(self, t: int) -> bool:
        slots = self.slots
        return all(slots[j] >= t for j in self.others)

    def wait(self, t: int) -> None:
        self.slots[self.me] = t
        _fence()
        if self._done(t):  # the last to arrive wakes whoever went to sleep
            sleeping = self.sh.sleeping
            for j in self.others:
                if sleeping[j] == t:
                    _wake(self.wake_w[j])
            return
        perf = time.perf_counter
        deadline = perf() + self.spin_s
        while perf() < deadline:
            if self._done(t):
                return
        sleeping = self.sh.sleeping
        sleeping[self.me] = t
        _fence()
        polls = 0
        while not self._done(t):
            ready, _, _ = select.select([self.wake_r], [], [], _BLOCK_POLL_S)
            if ready:
                _drain(self.wake_r)
            polls += 1
            if polls % 64 == 0 and not self.alive():
                sleeping[self.me] = 0
                raise EngineError("a draft participant is gone")
        sleeping[self.me] = 0


# --- the worker processes -------------------------------------------------------------------


@dataclass(frozen=True)
class _WorkerArgs:
    """A draft worker's command line, written by the pool and read by the worker:
    ``path index threads parent dim spin_us poll_us wake_r w0,w1,.. cpu``."""

    path: str  # the shared memory file
    me: int  # this worker's participant index (1..threads-1)
    threads: int
    parent: int  # the pool's pid: the worker exits once it is gone
    dim: int
    spin_us: float
    poll_us: float
    wake_r: int  # read end of this worker's wake pipe
    wake_fds: tuple[int, ...]  # every participant's wake pipe write end
    cpu: int | None  # the core to pin to

    def argv(self) -> list[str]:
        return [
            self.path,
            str(self.me),
            str(self.threads),
            str(self.parent),
            str(self.dim),
            repr(float(self.spin_us)),
            repr(float(self.poll_us)),
            str(self.wake_r),
            ",".join(str(w) for w in self.wake_fds),
            "-" if self.cpu is None else str(self.cpu),
        ]

    @classmethod
    def parse(cls, argv: list[str]) -> _WorkerArgs:
        return cls(
            path=argv[0],
            me=int(argv[1]),
            threads=int(argv[2]),
            parent=int(argv[3]),
            dim=int(argv[4]),
            spin_us=float(argv[5]),
            poll_us=float(argv[6]),
            wake_r=int(argv[7]),
            wake_fds=tuple(int(fd) for fd in argv[8].split(",")),
            cpu=int(argv[9]) if len(argv) > 9 and argv[9] != "-" else None,
        )

    def others_wake(self) -> dict[int, int]:
        """The other participants' wake pipes, by participant index."""
        return {j: fd for j, fd in enumerate(self.wake_fds) if j != self.me}


def _precise_sleeps() -> None:
    """Short sleeps as asked (no 50 us timer slack), where Linux allows it."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK = 29


def _next_job(
    sh: _Shared, me: int, seen: int, poll_s: float, wake_r: int, alive: Callable[[], bool]
) -> bool:
    """Wait until the pool posts a job after `seen`: spin `poll_s` for it (ggml's --poll),
    then sleep on the wake pipe, marked idle so the pool wakes us. False if the pool's
    process is gone."""
    job, idle = sh.job, sh.idle
    perf = time.perf_counter
    if job[0] == seen and poll_s > 0:
        deadline = perf() + poll_s
        while job[0] == seen and perf() < deadline:
            pass
    if job[0] == seen:
        idle[me] = 1
        _fence()
        while job[0] == seen:
            ready, _, _ = select.select([wake_r], [], [], _IDLE_POLL_S)
            if ready:
                _drain(wake_r)
            elif not alive():
                return False
        idle[me] = 0
    return True


def _worker_main(argv: list[str]) -> int:
    """A draft worker: its rows of every unit of every job, until the pool quits or is gone."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = _WorkerArgs.parse(argv)
    me = args.me
    _pin(args.cpu)
    _precise_sleeps()
    with open(args.path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)

    def alive() -> bool:
        return os.getppid() == args.parent

    sh = _Shared(mm, args.threads)
    bar = _Barrier(sh, me, args.wake_r, args.others_wake(), args.spin_us / 1e6, alive)
    poll_s = args.poll_us / 1e6
    w, x, y = _make_slice(_rows(args.threads, me, args.dim), me, args.dim)
    np.dot(w, x, out=y)
    job = sh.job
    seen = int(job[0])
    sh.slots[me] = _READY
    yield_cpu = getattr(os, "sched_yield", lambda: None)
    while True:
        if not _next_job(sh, me, seen, poll_s, args.wake_r, alive):
            return 0
        seen = int(job[0])
        base, units = int(job[1]), int(job[2])
        if units == _QUIT:
            return 0
        try:
            for c in range(1, units + 1):
                np.dot(w, x, out=y)
                bar.wait(base + c)
        except EngineError:
            return 0
        # One decode done: let the scheduler run anyone else who is waiting for this core.
        # Free when the core is ours alone; under CPU contention it is where a draft
        # thread loses its core, once per drafted token, as threads that spin on shared
        # cores do.
        yield_cpu()


def _worker_env() -> dict[str, str]:
    """The workers' environment: one BLAS thread each (the pool is the parallelism)."""
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


# --- the pools ------------------------------------------------------------------------------


class LocalWork:
    """Work units computed on the calling thread (the verifier's CPU share)."""

    def __init__(self, dim: int = VERIFY_DIM) -> None:
        self.dim = dim
        self._w, self._x, self._y = _make_slice(dim, 0, dim)

    def run(self, units: int) -> None:
        w, x, y = self._w, self._x, self._y
        for _ in range(units):
            np.dot(w, x, out=y)

    def close(self) -> None:
        pass


class DraftPool:
    """`threads` participants computing work units in lock step: the caller and workers.

    Every unit is a `dim` x `dim` integer mat-vec split by rows over the participants, who
    meet at a spin-then-block barrier (`_Barrier`) after each unit, like ggml's thread pool
    meets after every operation. Participant 0 is the calling thread; the others are
    worker processes (so the GIL never serialises them), each pinned to its own core when
    there are enough, that poll `poll_us` for their next job (ggml's --poll), then sleep,
    and exit when the engine closes the pool or their parent is gone. After each job every
    participant yields its core once (`sched_yield`): free when nobody else wants the core,
    a lost time slice when another process does.
    """

    def __init__(
        self,
        threads: int,
        dim: int = WORK_DIM,
        spin_us: float = DEFAULT_SPIN_US,
        poll_us: float = DEFAULT_POLL_US,
        pin: bool = True,
        start_timeout: float = 20.0,
    ) -> None:
        self.threads = max(1, int(threads))
        self.dim = dim
        self.spin_us = spin_us
        self.poll_us = poll_us
        n = self.threads  # participant 0 = the caller, 1..threads-1 = workers
        cpus = _cpus()
        # participant i gets the i-th allowed core: the workers at start, the caller (an HTTP
        # thread) for the time of each request (`pinned`). Unpinned, the scheduler may stack
        # the caller onto a worker's core while load fills the others; then every barrier
        # waits out a whole spin for a participant that cannot run (requests of seconds)
        self.cpus: list[int | None] = (
            [cpus[i] for i in range(n)] if pin and len(cpus) >= n else [None] * n
        )
        self._w, self._x, self._y = _make_slice(_rows(n, 0, dim), 0, dim)
        self._yield = getattr(os, "sched_yield", lambda: None)
        self._base = 0
        self._procs: list[subprocess.Popen[bytes]] = []
        self._fds: list[int] = []
        if n == 1:
            return
        path, mm = _shared_file(_Shared.size(n))
        try:
            self._sh = _Shared(mm, n)
            self._start_workers(path)
            self._wait_ready(start_timeout)
        except BaseException:
            self.close()
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _start_workers(self, path: str) -> None:
        """Spawn participants 1..threads-1 on the shared file `path`, each with its wake pipe;
        participant 0's barrier waits for them."""
        n = self.threads
        pipes = [os.pipe() for _ in range(n)]
        self._fds = [fd for pair in pipes for fd in pair]
        for _r, w in pipes:
            os.set_blocking(w, False)
        self._wake_w = {j: pipes[j][1] for j in range(1, n)}
        wake_fds = tuple(w for _, w in pipes)
        env = _worker_env()
        for i in range(1, n):
            args = _WorkerArgs(
                path=path,
                me=i,
                threads=n,
                parent=os.getpid(),
                dim=self.dim,
                spin_us=self.spin_us,
                poll_us=self.poll_us,
                wake_r=pipes[i][0],
                wake_fds=wake_fds,
                cpu=self.cpus[i],
            )
            self._procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", _WORKER_SRC, *args.argv()],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    env=env,
                    close_fds=True,
                    pass_fds=[pipes[i][0], *wake_fds],
                    start_new_session=True,
                )
            )
        for i in range(1, n):  # the workers hold their read ends now
            os.close(pipes[i][0])
            self._fds.remove(pipes[i][0])
        self._bar = _Barrier(
            self._sh, 0, pipes[0][0], self._wake_w, self.spin_us / 1e6, self._workers_alive
        )

    def _wait_ready(self, timeout: float) -> None:
        """Until every worker has mapped the file and computed once (EngineError if one
        exits or `timeout` s pass); then every participant starts at unit 0."""
        sh = self._sh
        deadline = time.monotonic() + timeout
        while not all(sh.slots[i] == _READY for i in range(1, self.threads)):
            if not self._workers_alive():
                raise EngineError("a draft worker exited during startup")
            if time.monotonic() > deadline:
                raise EngineError("draft workers did not start in time")
            time.sleep(0.005)
        sh.slots[:] = 0

    def _workers_alive(self) -> bool:
        return all(p.poll() is None for p in self._procs)

    def _post(self, base: int, units: int) -> None:
        sh = self._sh
        sh.job[1] = base
        sh.job[2] = units
        sh.job[0] += 1  # last: workers read base and units after seeing it
        _fence()
        for j, fd in self._wake_w.items():
            if sh.idle[j]:
                _wake(fd)

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Pin the calling thread to participant 0's core for a while, then restore its mask."""
        cpu = self.cpus[0] if self.threads > 1 else None
        if cpu is None:
            yield
            return
        try:
            before = os.sched_getaffinity(0)
        except (AttributeError, OSError):
            yield
            return
        _pin(cpu)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, before)

    def run(self, units: int) -> None:
        """Compute `units` work units together; returns when every participant is done."""
        if units <= 0:
            return
        w, x, y = self._w, self._x, self._y
        if self.threads == 1:
            for _ in range(units):
                np.dot(w, x, out=y)
            self._yield()
            return
        if not self._procs:
            raise EngineError("the draft pool is closed")
        base = self._base
        self._post(base, units)
        wait = self._bar.wait
        for c in range(1, units + 1):
            np.dot(w, x, out=y)
            wait(base + c)
        self._base = base + units
        self._yield()

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def close(self) -> None:
        if self._procs:
            with contextlib.suppress(Exception):
                self._post(self._base, _QUIT)
        for p in self._procs:
            try:
                p.wait(2.0)
            except subprocess.TimeoutExpired:
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(2.0)
        self._procs = []
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []


__all__ = [
    "DEFAULT_POLL_US",
    "DEFAULT_SPIN_US",
    "VERIFY_DIM",
    "WORK_DIM",
    "DraftPool",
    "EngineError",
    "LocalWork",
    "default_threads",
]
