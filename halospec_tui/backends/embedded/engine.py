"""The embedded speculative-decoding engine: physical costs, seeded acceptance.

No model runs here, but every cost is paid for real, so the draft length trade-off behaves
like a real llama-server's (docs/embedded-engine.md has the measured k table):

* **Prefill** (once per request): one target pass, i.e. CPU work that grows with the
  prompt plus one verify wait. It samples the first generated token, as llama-server does.
* **Verify steps**, until ``max_tokens`` tokens exist. The draft length of a step is
  ``k = min(n_max, remaining - 1)``, and 0 when that is below ``n_min`` (llama-server then
  drafts nothing).

  1. *Draft* ``k`` tokens, one draft-model decode (one pool job) per token. A decode is
     ``draft_work`` work units; a unit is an integer mat-vec whose rows are split over the
     ``threads`` participants of a `DraftPool` (this thread plus ``threads - 1`` worker
     processes, each pinned to its own core), who meet at a barrier after every unit, as
     ggml's threads do after every operation. After each decode every participant yields
     its core once (``sched_yield``). With the cores to itself that costs nothing; when
     other processes want the cores (CPU load) a participant loses its core for a time
     slice there, and the barrier makes every other participant wait for it, spinning as
     ggml's barrier does (burning its own time slice). So CPU load makes each drafted
     token several times dearer while the verify step (mostly a wait) barely changes,
     which is what moves the best k down.
  2. *Verify* ``k + 1`` tokens: ``verify_work`` work units per verified token on this
     thread (CPU), then a ``verify_wait_ms`` sleep, standing for the GPU.
  3. Draft token ``j`` (0-based) of a step that starts at output position ``p`` is accepted
     when ``u[p + j] < alpha[category]``; ``accepted`` is the leading run of successes and
     the step emits ``accepted + 1`` tokens. ``u`` comes from a generator seeded with
     ``(seed, prompt text, i)`` where ``i`` counts the earlier requests with the same prompt
     and draft length: never from timing, so the same seed and request sequence reproduce
     every counter and text, and the i-th request of every fixed-k mode sees the same
     token difficulties (common random numbers: fixed-k comparisons are not luck).

The text is filler of the prompt's category (`classify`), one piece per token, drawn from
``(seed, prompt text)``: like greedy decoding, it does not depend on the draft length.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CATEGORIES = ("code", "prose", "math", "json")
DEFAULT_ALPHAS: dict[str, float] = {"code": 0.85, "prose": 0.72, "math": 0.78, "json": 0.9}

WORK_DIM = 128  # one draft work unit: a WORK_DIM x WORK_DIM int64 mat-vec, split over the pool
VERIFY_DIM = 128  # one verify work unit: a VERIFY_DIM x VERIFY_DIM int64 mat-vec, one thread
DEFAULT_DRAFT_WORK = 8  # work units (barriers) per drafted token
DEFAULT_VERIFY_WORK = 7  # work units per verified token (this thread only)
DEFAULT_VERIFY_WAIT_MS = 1.5  # GPU-like wait per target pass (verify step or prefill)
PREFILL_TOKENS_PER_UNIT = 16  # prefill CPU: one work unit per this many prompt tokens
MAX_TOKENS_CAP = 8192
MAX_N_MAX = 64

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


# --- classification ------------------------------------------------------------------------

_JSON_RE = re.compile(r"\bjson\b|\{\s*\"", re.IGNORECASE)
_CODE_RE = re.compile(
    r"```|\b(code|coding|function|functions|python|javascript|typescript|java|rust|golang|"
    r"c\+\+|c#|sql|regex|bash|shell script|script|program|programming|implement|"
    r"refactor|compile|compiler|class|method|snippet|api|unit test|debug)\b"
    r"|\bdef\s+\w+\s*\(|\bfn\s+\w+\s*\(|=>|\breturn\b",
    re.IGNORECASE,
)
_MATH_RE = re.compile(
    r"\b(solve|compute|calculate|calculation|equation|equations|arithmetic|algebra|integral|"
    r"derivative|sum of|product of|how many|how much|percent|percentage|probability|"
    r"prime|factorial|multiply|divide|divided|times|square root|math|mathematics)\b"
    r"|\d\s*[-+*/^×÷=]\s*\d",
    re.IGNORECASE,
)


def classify(text: str) -> str:
    """The content category of a prompt, by the first rule that matches its text.

    1. ``json``: the word JSON (any case) or a JSON object opening ``{"``.
    2. ``code``: a code fence (```), a programming word (code, function, Python,
       JavaScript, SQL, regex, script, program, implement, refactor, class, method,
       API, debug, ...), or code-like text (``def f(``, ``fn f(``, ``=>``, ``return``).
    3. ``math``: solve, compute, calculate, equation, arithmetic, algebra, integral,
       derivative, "sum of", "how many", percent, probability, prime, ..., or a digit,
       an operator and a digit (``12 * 7``, ``3+4=``).
    4. ``prose``: everything else.

    Words match whole (``decoding`` is not ``code``), case-insensitively.
    """
    if _JSON_RE.search(text):
        return "json"
    if _CODE_RE.search(text):
        return "code"
    if _MATH_RE.search(text):
        return "math"
    return "prose"


def count_tokens(text: str) -> int:
    """A rough token count: words and punctuation marks."""
    return len(_TOKEN_RE.findall(text))


# --- filler text -----------------------------------------------------------------------------

_FILLER: dict[str, tuple[str, ...]] = {
    "prose": (
        "Speculative decoding is a technique in which a small draft model proposes several "
        "tokens that the large target model then verifies in a single forward pass.",
        "The target keeps the longest prefix it agrees with and adds one token of its own, "
        "so the output is unchanged while fewer sequential passes are needed.",
        "When the draft guesses well, several tokens arrive for the price of one step.",
        "When it guesses badly, the extra drafting is wasted work and latency grows.",
        "The best draft length therefore depends on the content and on the hardware load.",
    ),
    "code": (
        "def draft_tokens(model, context, k):\n",
        "    tokens = []\n",
        "    for _ in range(k):\n",
        "        token = model.predict(context + tokens)\n",
        "        tokens.append(token)\n",
        "    return tokens\n",
        "\n",
        "def verify(target, context, draft):\n",
        "    accepted = 0\n",
        "    for i, token in enumerate(draft):\n",
        "        if target.predict(context + draft[:i]) != token:\n",
        "            break\n",
        "        accepted += 1\n",
        "    return accepted\n",
    ),
    "math": (
        "Let the acceptance rate be a = 0.8 and the draft length be k = 4.",
        "The expected number of tokens per step is (1 - a^(k+1)) / (1 - a).",
        "So E = (1 - 0.8^5) / 0.2 = (1 - 0.32768) / 0.2 = 3.3616.",
        "With a draft cost of c = 0.1 per token, the speedup is E / (c * k + 1).",
        "That gives 3.3616 / 1.4 = 2.4011, so the answer is about 2.4.",
    ),
    "json": (
        '{"name": "speculative_decoding", "draft_length": 4, "acceptance": 0.8, ',
        '"tokens": ["the", "draft", "model", "proposes"], "verified": true, ',
        '"steps": [{"k": 4, "accepted": 3}, {"k": 4, "accepted": 4}], ',
        '"target": {"model": "Qwen3-0.6B", "device": "gpu"}, "speedup": 2.4}',
    ),
}
_PIECE_RE = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")
_PIECES: dict[str, list[list[str]]] = {
    cat: [_PIECE_RE.findall(s if s[-1].isspace() else s + " ") for s in sentences]
    for cat, sentences in _FILLER.items()
}


def filler_pieces(category: str, n: int, rng: np.random.Generator) -> list[str]:
    """`n` text pieces (one per token) of the category's filler, starting at a random line."""
    lines = _PIECES.get(category, _PIECES["prose"])
    i = int(rng.integers(len(lines)))
    out: list[str] = []
    while len(out) < n:
        out.extend(lines[i % len(lines)])
        i += 1
    return out[:n]


# --- the draft pool --------------------------------------------------------------------------

_WORKER_SRC = r"""
import sys
from halospec_tui.backends.embedded.engine import _worker_main
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
        self, sh: _Shared, me: int, wake_r: int, wake_w: dict[int, int], spin_s: float, alive: Any
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


def _worker_main(argv: list[str]) -> int:
    """A draft worker: `path index threads parent dim spin_us poll_us wake_r w0,w1,.. cpu`."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path, me, threads, parent, dim = argv[0], int(argv[1]), int(argv[2]), int(argv[3]), int(argv[4])
    spin_s, poll_s = float(argv[5]) / 1e6, float(argv[6]) / 1e6
    wake_r = int(argv[7])
    wake_w = {j: int(fd) for j, fd in enumerate(argv[8].split(",")) if j != me}
    _pin(int(argv[9]) if len(argv) > 9 and argv[9] != "-" else None)
    with contextlib.suppress(Exception):  # precise short sleeps (no 50 us timer slack)
        import ctypes

        ctypes.CDLL(None).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK = 29
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)

    def alive() -> bool:
        return os.getppid() == parent

    sh = _Shared(mm, threads)
    bar = _Barrier(sh, me, wake_r, wake_w, spin_s, alive)
    w, x, y = _make_slice(_rows(threads, me, dim), me, dim)
    np.dot(w, x, out=y)
    job, idle = sh.job, sh.idle
    seen = int(job[0])
    sh.slots[me] = _READY
    perf = time.perf_counter
    yield_cpu = getattr(os, "sched_yield", lambda: None)
    while True:
        if job[0] == seen and poll_s > 0:  # poll for the next job for a while (ggml's --poll)
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
                    return 0
            idle[me] = 0
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


class EngineError(RuntimeError):
    """The engine cannot run (a draft worker died or never started)."""


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
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        fd, path = tempfile.mkstemp(prefix="halospec-draft-", dir=shm)
        try:
            os.write(fd, b"\0" * max(4096, _Shared.size(n)))
            mm = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        try:
            self._sh = sh = _Shared(mm, n)
            pipes = [os.pipe() for _ in range(n)]
            self._fds = [fd for pair in pipes for fd in pair]
            for _r, w in pipes:
                os.set_blocking(w, False)
            self._wake_w = {j: pipes[j][1] for j in range(1, n)}
            wake_w = ",".join(str(w) for _, w in pipes)
            env = dict(os.environ)
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = "1"
            for i in range(1, n):
                cpu = self.cpus[i]
                self._procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-c",
                            _WORKER_SRC,
                            path,
                            str(i),
                            str(self.threads),
                            str(os.getpid()),
                            str(dim),
                            repr(float(spin_us)),
                            repr(float(poll_us)),
                            str(pipes[i][0]),
                            wake_w,
                            "-" if cpu is None else str(cpu),
                        ],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        env=env,
                        close_fds=True,
                        pass_fds=[pipes[i][0], *(w for _, w in pipes)],
                        start_new_session=True,
                    )
                )
            for i in range(1, n):  # the workers hold their read ends now
                os.close(pipes[i][0])
                self._fds.remove(pipes[i][0])
            self._bar = _Barrier(
                sh, 0, pipes[0][0], self._wake_w, spin_us / 1e6, self._workers_alive
            )
            deadline = time.monotonic() + start_timeout
            while not all(sh.slots[i] == _READY for i in range(1, n)):
                if not self._workers_alive():
                    raise EngineError("a draft worker exited during startup")
                if time.monotonic() > deadline:
                    raise EngineError("draft workers did not start in time")
                time.sleep(0.005)
            sh.slots[:] = 0
        except BaseException:
            self.close()
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

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
    def pinned(self) -> Any:
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


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# --- results and counters -------------------------------------------------------------------


@dataclass
class GenerationResult:
    """One request's outcome, with llama-server's timing fields."""

    text: str
    category: str
    request_index: int
    n_max: int  # effective draft length cap for this request
    n_min: int
    prompt_n: int
    prompt_ms: float
    predicted_n: int
    predicted_ms: float
    draft_n: int  # tokens drafted
    draft_n_accepted: int  # drafted tokens accepted
    n_drafts: int  # verify steps that drafted (k > 0)
    n_steps: int  # verify steps, drafting or not (the prefill not counted)
    accepted_per_pos: list[int] = field(default_factory=list)  # [i]: accepted at draft pos i
    draft_ms: float = 0.0  # where predicted_ms went: drafting,
    verify_cpu_ms: float = 0.0  # the verify steps' CPU work
    verify_wait_ms: float = 0.0  # and their (GPU-like) waits

    @property
    def predicted_per_second(self) -> float:
        return self.predicted_n / (self.predicted_ms / 1000.0) if self.predicted_ms > 0 else 0.0

    @property
    def observed_k(self) -> float | None:
        steps = self.predicted_n - self.draft_n_accepted
        return self.draft_n / steps if steps > 0 else None

    @property
    def speculated(self) -> bool:
        return self.n_max > 0

    def timings(self) -> dict[str, Any]:
        """llama-server's `timings` object; draft fields only when speculation ran."""
        t: dict[str, Any] = {
            "prompt_n": self.prompt_n,
            "prompt_ms": round(self.prompt_ms, 3),
            "prompt_per_token_ms": round(self.prompt_ms / self.prompt_n, 3)
            if self.prompt_n
            else 0.0,
            "prompt_per_second": round(self.prompt_n / (self.prompt_ms / 1000.0), 3)
            if self.prompt_ms > 0
            else 0.0,
            "predicted_n": self.predicted_n,
            "predicted_ms": round(self.predicted_ms, 3),
            "predicted_per_token_ms": round(self.predicted_ms / self.predicted_n, 3)
            if self.predicted_n
            else 0.0,
            "predicted_per_second": round(self.predicted_per_second, 3),
        }
        if self.speculated:
            t["draft_n"] = self.draft_n
            t["draft_n_accepted"] = self.draft_n_accepted
        return t

    def lmstudio_stats(self, draft_model: str) -> dict[str, Any]:
        """LM Studio's REST `stats` object (seconds, not ms); draft counts when drafting ran.
        LM Studio counts no "ignored" drafts here: the engine never drafts past max_tokens."""
        s: dict[str, Any] = {
            "tokens_per_second": round(self.predicted_per_second, 3),
            "time_to_first_token": round(self.prompt_ms / 1000.0, 6),
            "generation_time": round(self.predicted_ms / 1000.0, 6),
            "stop_reason": "maxPredictedTokensReached",
        }
        if self.speculated:
            s["draft_model"] = draft_model
            s["total_draft_tokens_count"] = self.draft_n
            s["accepted_draft_tokens_count"] = self.draft_n_accepted
            s["rejected_draft_tokens_count"] = self.draft_n - self.draft_n_accepted
            s["ignored_draft_tokens_count"] = 0
        return s


@dataclass
class Counters:
    """Server-wide totals, as llama-server's /metrics reports them."""

    requests: int = 0
    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    tokens_predicted: int = 0
    tokens_predicted_seconds: float = 0.0
    n_decode: int = 0
    draft_tokens: int = 0
    accepted_tokens: int = 0
    drafts: int = 0
    accepted_per_pos: list[int] = field(default_factory=list)

    def add(self, r: GenerationResult) -> None:
        self.requests += 1
        self.prompt_tokens += r.prompt_n
        self.prompt_seconds += r.prompt_ms / 1000.0
        self.tokens_predicted += r.predicted_n
        self.tokens_predicted_seconds += r.predicted_ms / 1000.0
        self.n_decode += 1 + r.n_steps
        self.draft_tokens += r.draft_n
        self.accepted_tokens += r.draft_n_accepted
        self.drafts += r.n_drafts
        if len(self.accepted_per_pos) < len(r.accepted_per_pos):
            self.accepted_per_pos.extend(
                [0] * (len(r.accepted_per_pos) - len(self.accepted_per_pos))
            )
        for i, v in enumerate(r.accepted_per_pos):
            self.accepted_per_pos[i] += v

    def copy(self) -> Counters:
        return Counters(**{**self.__dict__, "accepted_per_pos": list(self.accepted_per_pos)})


_PROM: list[tuple[str, str, str, str]] = [
    ("prompt_tokens_total", "counter", "prompt_tokens", "Number of prompt tokens processed."),
    ("prompt_seconds_total", "counter", "prompt_seconds", "Prompt process time."),
    (
        "tokens_predicted_total",
        "counter",
        "tokens_predicted",
        "Number of generation tokens processed.",
    ),
    (
        "tokens_predicted_seconds_total",
        "counter",
        "tokens_predicted_seconds",
        "Predict process time.",
    ),
    ("n_decode_total", "counter", "n_decode", "Total number of target decode calls."),
    ("requests_total", "counter", "requests", "Completed generation requests."),
    ("spec_decode_num_drafts_total", "counter", "drafts", "Verify steps that checked a draft."),
    ("spec_decode_num_draft_tokens_total", "counter", "draft_tokens", "Draft tokens proposed."),
    (
        "spec_decode_num_accepted_tokens_total",
        "counter",
        "accepted_tokens",
        "Draft tokens accepted.",
    ),
]


def prometheus_text(c: Counters, *, busy: bool = False, prefix: str = "llamacpp:") -> str:
    """The counters in Prometheus text format, named as llama-server names them."""
    lines: list[str] = []
    for name, kind, attr, help_ in _PROM:
        value = getattr(c, attr)
        lines += [f"# HELP {prefix}{name} {help_}", f"# TYPE {prefix}{name} {kind}"]
        lines.append(
            f"{prefix}{name} {value:.6f}" if isinstance(value, float) else f"{prefix}{name} {value}"
        )
    name = f"{prefix}spec_decode_num_accepted_tokens_per_pos_total"
    lines += [
        f"# HELP {name} Draft tokens accepted, by draft position (0-based).",
        f"# TYPE {name} counter",
    ]
    for i, v in enumerate(c.accepted_per_pos):
        lines.append(f'{name}{{position="{i}"}} {v}')
    for name, v in (("requests_processing", int(busy)), ("requests_deferred", 0)):
        lines += [f"# TYPE {prefix}{name} gauge", f"{prefix}{name} {v}"]
    return "\n".join(lines) + "\n"


# --- the engine ------------------------------------------------------------------------------


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


class Engine:
    """The speculative-decoding simulator; thread-safe (one request at a time, like one slot).

    `None` (or the profile's sentinel: 0 for draft_work and threads, -1 for verify_work and
    verify_wait_ms) selects the engine default for a cost setting.
    """

    def __init__(
        self,
        *,
        seed: int = 42,
        default_n_max: int = 3,
        alphas: Mapping[str, float] | None = None,
        draft_work: int | None = None,
        verify_wait_ms: float | None = None,
        verify_work: int | None = None,
        threads: int | None = None,
        spin_us: float | None = None,
        poll_us: float | None = None,
    ) -> None:
        self.seed = int(seed)
        self.default_n_max = _clamp_k(default_n_max)
        self.alphas = dict(DEFAULT_ALPHAS)
        for cat, a in (alphas or {}).items():
            if cat not in CATEGORIES:
                raise ValueError(f"unknown category {cat!r} (expected one of {CATEGORIES})")
            if a is None:
                continue
            if not 0.0 <= float(a) <= 1.0:
                raise ValueError(f"alpha for {cat} must be in [0, 1], got {a}")
            self.alphas[cat] = float(a)
        self.draft_work = DEFAULT_DRAFT_WORK if not draft_work else int(draft_work)
        self.verify_work = (
            DEFAULT_VERIFY_WORK if verify_work is None or verify_work < 0 else int(verify_work)
        )
        self.verify_wait_ms = (
            DEFAULT_VERIFY_WAIT_MS
            if verify_wait_ms is None or verify_wait_ms < 0
            else float(verify_wait_ms)
        )
        self.threads = default_threads() if not threads else int(threads)
        self._lock = threading.Lock()
        self._counters = Counters()
        self._index = 0
        self._draw_counts: dict[tuple[Any, ...], int] = {}
        self._busy = False
        self.spin_us = DEFAULT_SPIN_US if spin_us is None or spin_us < 0 else float(spin_us)
        self.poll_us = DEFAULT_POLL_US if poll_us is None or poll_us < 0 else float(poll_us)
        self._pool = DraftPool(self.threads, WORK_DIM, self.spin_us, self.poll_us)
        # warm the code paths (first calls are slower) so request 0 is like the others
        self._pool.run(4)
        self._verifier = LocalWork(VERIFY_DIM)
        self._verifier.run(4)

    @classmethod
    def from_settings(cls, settings: Any, seed: int, **overrides: Any) -> Engine:
        """Build from a profile's EmbeddedSettings; keyword overrides win."""
        kw: dict[str, Any] = {
            "seed": seed,
            "default_n_max": settings.default_n_max,
            "alphas": {c: getattr(settings, f"alpha_{c}") for c in CATEGORIES},
            "draft_work": settings.draft_work,
            "verify_wait_ms": settings.verify_wait_ms,
            "verify_work": settings.verify_work,
            "threads": settings.threads,
        }
        kw.update(overrides)
        return cls(**kw)

    # -- properties
    @property
    def request_count(self) -> int:
        return self._index

    @property
    def busy(self) -> bool:
        return self._busy

    def config(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "default_n_max": self.default_n_max,
            "alphas": dict(self.alphas),
            "draft_work": self.draft_work,
            "verify_work": self.verify_work,
            "verify_wait_ms": self.verify_wait_ms,
            "threads": self.threads,
            "spin_us": self.spin_us,
            "poll_us": self.poll_us,
            "work_dim": WORK_DIM,
            "verify_dim": VERIFY_DIM,
        }

    def set_default_n_max(self, n_max: int) -> None:
        """Change the draft length used without a request value (waits for a running request)."""
        with self._lock:
            self.default_n_max = _clamp_k(n_max)

    def counters(self) -> Counters:
        with self._lock:
            return self._counters.copy()

    def prometheus(self) -> str:
        return prometheus_text(self.counters(), busy=self._busy)

    def pids(self) -> list[int]:
        return self._pool.pids()

    # -- generation
    def generate(
        self,
        prompt_text: str,
        max_tokens: int,
        n_max: int | None = None,
        n_min: int | None = None,
        *,
        category: str | None = None,
        stream: str | None = None,
        on_tokens: Callable[[list[str]], None] | None = None,
    ) -> GenerationResult:
        """Generate `max_tokens` tokens with draft length cap `n_max` (None: the default).

        `stream` names a client's request sequence (an evaluation's mode): its i-th request
        with a prompt draws the same token difficulties as every other stream's i-th request
        with that prompt, whatever k each asks for, so modes sharing one server still see
        common random numbers. Without it, requests count per (prompt, draft length).

        `on_tokens(pieces)` (a streaming server's hook) gets the text of the tokens each
        pass emits as soon as it has emitted them: the prefill's first token, then every
        verify step's accepted tokens plus one, at once, as llama-server sends them."""
        max_tokens = max(0, min(int(max_tokens), MAX_TOKENS_CAP))
        with self._lock:
            self._busy = True
            try:
                k_cap = self.default_n_max if n_max is None else _clamp_k(n_max)
                digest = _digest(prompt_text)
                key: tuple[Any, ...] = (digest, k_cap) if stream is None else (digest, stream)
                draw = self._draw_counts.get(key, 0)
                self._draw_counts[key] = draw + 1
                index = self._index
                self._index += 1
                with self._pool.pinned():
                    result = self._generate(
                        prompt_text,
                        digest,
                        max_tokens,
                        k_cap,
                        n_min,
                        category,
                        index,
                        draw,
                        on_tokens,
                    )
                self._counters.add(result)
                return result
            finally:
                self._busy = False

    def _generate(
        self,
        prompt: str,
        digest: int,
        max_tokens: int,
        k_cap: int,
        n_min: int | None,
        category: str | None,
        index: int,
        draw: int,
        on_tokens: Callable[[list[str]], None] | None = None,
    ) -> GenerationResult:
        cat = category if category in CATEGORIES else classify(prompt)
        alpha = self.alphas[cat]
        k_min = 0 if n_min is None else _clamp_k(n_min)
        draws = np.random.default_rng([self.seed, digest, draw]).random(max_tokens + 1)
        accept = (draws < alpha).tolist()
        text_rng = np.random.default_rng([self.seed, digest, 0x7E47])
        # the text is known before the clock starts (one piece per token, a prefix of it per
        # reply length), so a streaming hook can send each pass's pieces as they are emitted
        pieces = filler_pieces(cat, max_tokens, text_rng) if on_tokens is not None else None
        prompt_n = count_tokens(prompt) + 8  # + a chat template's tokens
        wait_s = self.verify_wait_ms / 1000.0
        perf = time.perf_counter
        verify = self._verifier.run
        draft = self._pool.run

        t0 = perf()
        verify(self.verify_work * (1 + prompt_n // PREFILL_TOKENS_PER_UNIT))
        if wait_s > 0:
            time.sleep(wait_s)
        t1 = perf()

        produced = 1 if max_tokens > 0 else 0  # the prefill samples the first token
        if pieces is not None and produced:
            on_tokens(pieces[:produced])  # type: ignore[misc]
        draft_n = accepted_n = n_drafts = n_steps = 0
        per_pos = [0] * k_cap
        draft_s = verify_s = wait_s_total = 0.0
        while produced < max_tokens:
            k = min(k_cap, max_tokens - produced - 1)
            if k < k_min:
                k = 0
            ta = perf()
            for _ in range(k):  # one draft-model decode (one pool job) per drafted token
                draft(self.draft_work)
            tb = perf()
            verify(self.verify_work * (k + 1))
            tc = perf()
            if wait_s > 0:
                time.sleep(wait_s)
            td = perf()
            draft_s += tb - ta
            verify_s += tc - tb
            wait_s_total += td - tc
            acc = 0
            while acc < k and accept[produced + acc]:
                per_pos[acc] += 1
                acc += 1
            n_steps += 1
            if k > 0:
                n_drafts += 1
                draft_n += k
                accepted_n += acc
            produced += acc + 1
            if pieces is not None:
                on_tokens(pieces[produced - acc - 1 : produced])  # type: ignore[misc]
        t2 = perf()

        if pieces is not None:
            text = "".join(pieces[:produced]).strip()
        else:
            text = "".join(filler_pieces(cat, produced, text_rng)).strip() if produced else ""
        return GenerationResult(
            text=text,
            category=cat,
            request_index=index,
            n_max=k_cap,
            n_min=k_min,
            prompt_n=prompt_n,
            prompt_ms=(t1 - t0) * 1000.0,
            predicted_n=produced,
            predicted_ms=(t2 - t1) * 1000.0,
            draft_ms=draft_s * 1000.0,
            verify_cpu_ms=verify_s * 1000.0,
            verify_wait_ms=wait_s_total * 1000.0,
            draft_n=draft_n,
            draft_n_accepted=accepted_n,
            n_drafts=n_drafts,
            n_steps=n_steps,
            accepted_per_pos=per_pos,
        )

    def expected_tokens_per_step(self, category: str, k: int) -> float:
        """Leviathan et al.'s E(k) = (1 - a^(k+1)) / (1 - a) for the category's alpha."""
        a = self.alphas[category]
        return float(k + 1) if a >= 1.0 else (1.0 - a ** (k + 1)) / (1.0 - a)

    def close(self) -> None:
        self._pool.close()
        self._verifier.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _clamp_k(k: Any) -> int:
    k = int(k)
    return max(0, min(k, MAX_N_MAX))


__all__ = [
    "CATEGORIES",
    "DEFAULT_ALPHAS",
    "Counters",
    "DraftPool",
    "Engine",
    "EngineError",
    "GenerationResult",
    "classify",
    "count_tokens",
    "prometheus_text",
]
