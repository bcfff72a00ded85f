"""The embedded speculative-decoding engine: physical costs, seeded acceptance.

No model runs here, but every cost is paid for real, so the draft length trade-off behaves
like a real llama-server's (see docs/embedded-engine.md for the measured k table):

* **Prefill** (once per request): one target pass, i.e. a wait plus CPU work that grows with
  the prompt. It samples the first generated token, as llama-server does.
* **Verify step** (then repeated until ``max_tokens`` tokens exist): the draft length is
  ``k = min(n_max, remaining - 1)``; ``k = 0`` when that is below ``n_min`` (llama-server
  drafts nothing then).

  1. *Draft* ``k`` tokens: ``draft_work`` work units per token, computed by a pool of
     ``threads`` participants (this thread plus ``threads - 1`` worker processes) that each
     compute their slice of every unit (an integer mat-vec) and then meet at a *spinning*
     barrier before the next unit, like ggml's thread pool in llama.cpp. CPU contention
     from other processes therefore hurts drafting a lot: whenever one participant is
     descheduled the others spin.
  2. *Verify* ``k + 1`` tokens: ``verify_work`` work units per verified token on this thread
     (CPU, single-threaded), then ``verify_wait_ms`` of sleeping, standing for the GPU.
  3. Draft token ``j`` (0-based) of a step that starts at output position ``p`` is accepted
     when ``u[p + j] < alpha[category]``; ``accepted`` is the leading run of successes and
     the step emits ``accepted + 1`` tokens. ``u`` is drawn from a generator seeded by
     ``(seed, prompt text, request index)`` only, never by timing, so the same seed and
     request sequence reproduce every counter and text exactly.

The text is filler of the prompt's category (``classify``), one piece per token, drawn from
``(seed, prompt text)``: like greedy decoding, it does not depend on the draft length.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CATEGORIES = ("code", "prose", "math", "json")
DEFAULT_ALPHAS: dict[str, float] = {"code": 0.85, "prose": 0.72, "math": 0.78, "json": 0.9}

WORK_DIM = 128  # one work unit = a WORK_DIM x WORK_DIM int64 mat-vec, split over the pool
DEFAULT_DRAFT_WORK = 16  # work units per drafted token
DEFAULT_VERIFY_WORK = 2  # work units per verified token (this thread only)
DEFAULT_VERIFY_WAIT_MS = 2.0  # GPU-like wait per target pass (verify step or prefill)
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
import os, sys
from halospec_tui.backends.embedded.engine import _worker_main
sys.exit(_worker_main(sys.argv[1:]))
"""
_MSG = struct.Struct("qq")
_READY = -1
_SPIN_CHECK = 1 << 16  # spin iterations between liveness checks


def _make_slice(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.integers(-8, 8, size=(rows, WORK_DIM), dtype=np.int64)
    x = rng.integers(-8, 8, size=WORK_DIM, dtype=np.int64)
    return w, x, np.empty(rows, dtype=np.int64)


def _rows(threads: int, index: int) -> int:
    base, extra = divmod(WORK_DIM, threads)
    return max(1, base + (1 if index < extra else 0))


def _worker_main(argv: list[str]) -> int:
    """A draft worker process: `path index threads parent_pid`; jobs arrive on stdin."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path, me, threads, parent = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)
    slots = np.frombuffer(mm, dtype=np.int64, count=threads)
    w, x, y = _make_slice(_rows(threads, me), me)
    others = [j for j in range(threads) if j != me]
    np.dot(w, x, out=y)
    slots[me] = _READY
    getppid = os.getppid
    while True:
        try:
            msg = os.read(0, _MSG.size)
        except (OSError, KeyboardInterrupt):
            return 0
        if len(msg) < _MSG.size:  # the engine is gone
            return 0
        base, n = _MSG.unpack(msg)
        for c in range(1, n + 1):
            np.dot(w, x, out=y)
            t = base + c
            slots[me] = t
            for j in others:
                spins = 0
                while slots[j] < t:
                    spins += 1
                    if spins >= _SPIN_CHECK:
                        spins = 0
                        if getppid() != parent:
                            return 0


class EngineError(RuntimeError):
    """The engine cannot run (a draft worker died or never started)."""


class DraftPool:
    """`threads` participants computing work units in lock step with a spinning barrier.

    Participant 0 is the calling thread; the others are worker processes (so the GIL never
    serialises them) that read jobs from a pipe and exit when it closes.
    """

    def __init__(self, threads: int, start_timeout: float = 20.0) -> None:
        self.threads = max(1, int(threads))
        self._base = 0
        self._procs: list[subprocess.Popen[bytes]] = []
        self._mm: mmap.mmap | None = None
        self._w, self._x, self._y = _make_slice(_rows(self.threads, 0), 0)
        if self.threads == 1:
            self._slots = np.zeros(1, dtype=np.int64)
            return
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        fd, path = tempfile.mkstemp(prefix="halospec-draft-", dir=shm)
        try:
            os.write(fd, b"\0" * max(4096, 8 * self.threads))
            self._mm = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        try:
            self._slots = np.frombuffer(self._mm, dtype=np.int64, count=self.threads)
            self._slots[:] = 0
            env = dict(os.environ)
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = "1"
            for i in range(1, self.threads):
                self._procs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", _WORKER_SRC, path, str(i), str(self.threads),
                         str(os.getpid())],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL,
                        env=env,
                        close_fds=True,
                        start_new_session=True,
                    )
                )
            deadline = time.monotonic() + start_timeout
            while not all(self._slots[i] == _READY for i in range(1, self.threads)):
                if any(p.poll() is not None for p in self._procs):
                    raise EngineError("a draft worker exited during startup")
                if time.monotonic() > deadline:
                    raise EngineError("draft workers did not start in time")
                time.sleep(0.005)
            self._slots[:] = 0
        except BaseException:
            self.close()
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def run(self, units: int) -> None:
        """Compute `units` work units together; returns when every participant is done."""
        if units <= 0:
            return
        w, x, y = self._w, self._x, self._y
        if self.threads == 1:
            for _ in range(units):
                np.dot(w, x, out=y)
            return
        base = self._base
        msg = _MSG.pack(base, units)
        for p in self._procs:
            try:
                os.write(p.stdin.fileno(), msg)  # type: ignore[union-attr]
            except (OSError, ValueError) as e:
                raise EngineError(f"draft worker {p.pid} is gone") from e
        slots = self._slots
        others = range(1, self.threads)
        for c in range(1, units + 1):
            np.dot(w, x, out=y)
            t = base + c
            slots[0] = t
            for j in others:
                spins = 0
                while slots[j] < t:
                    spins += 1
                    if spins >= _SPIN_CHECK:
                        spins = 0
                        if self._procs[j - 1].poll() is not None:
                            raise EngineError(f"draft worker {self._procs[j - 1].pid} died")
        self._base = base + units

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def close(self) -> None:
        for p in self._procs:
            with contextlib.suppress(Exception):
                p.stdin.close()  # type: ignore[union-attr]
        for p in self._procs:
            try:
                p.wait(2.0)
            except subprocess.TimeoutExpired:
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(2.0)
        self._procs = []


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
            "prompt_per_token_ms": round(self.prompt_ms / self.prompt_n, 3) if self.prompt_n else 0.0,
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
            self.accepted_per_pos.extend([0] * (len(r.accepted_per_pos) - len(self.accepted_per_pos)))
        for i, v in enumerate(r.accepted_per_pos):
            self.accepted_per_pos[i] += v

    def copy(self) -> Counters:
        return Counters(**{**self.__dict__, "accepted_per_pos": list(self.accepted_per_pos)})


_PROM: list[tuple[str, str, str, str]] = [
    ("prompt_tokens_total", "counter", "prompt_tokens", "Number of prompt tokens processed."),
    ("prompt_seconds_total", "counter", "prompt_seconds", "Prompt process time."),
    ("tokens_predicted_total", "counter", "tokens_predicted", "Number of generation tokens processed."),
    ("tokens_predicted_seconds_total", "counter", "tokens_predicted_seconds", "Predict process time."),
    ("n_decode_total", "counter", "n_decode", "Total number of target decode calls."),
    ("requests_total", "counter", "requests", "Completed generation requests."),
    ("spec_decode_num_drafts_total", "counter", "drafts", "Verify steps that checked a draft."),
    ("spec_decode_num_draft_tokens_total", "counter", "draft_tokens", "Draft tokens proposed."),
    ("spec_decode_num_accepted_tokens_total", "counter", "accepted_tokens", "Draft tokens accepted."),
]


def prometheus_text(c: Counters, *, busy: bool = False, prefix: str = "llamacpp:") -> str:
    """The counters in Prometheus text format, named as llama-server names them."""
    lines: list[str] = []
    for name, kind, attr, help_ in _PROM:
        value = getattr(c, attr)
        lines += [f"# HELP {prefix}{name} {help_}", f"# TYPE {prefix}{name} {kind}"]
        lines.append(f"{prefix}{name} {value:.6f}" if isinstance(value, float) else f"{prefix}{name} {value}")
    name = f"{prefix}spec_decode_num_accepted_tokens_per_pos_total"
    lines += [f"# HELP {name} Draft tokens accepted, by draft position (0-based).",
              f"# TYPE {name} counter"]
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
        self.verify_work = DEFAULT_VERIFY_WORK if verify_work is None or verify_work < 0 else int(verify_work)
        self.verify_wait_ms = (
            DEFAULT_VERIFY_WAIT_MS if verify_wait_ms is None or verify_wait_ms < 0 else float(verify_wait_ms)
        )
        self.threads = default_threads() if not threads else int(threads)
        self._lock = threading.Lock()
        self._counters = Counters()
        self._index = 0
        self._draw_counts: dict[tuple[int, int], int] = {}
        self._busy = False
        self._pool = DraftPool(self.threads)
        # warm the code paths (first calls are slower) so request 0 is like the others
        self._pool.run(4)
        self._verifier = DraftPool(1)
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
            "work_dim": WORK_DIM,
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
    ) -> GenerationResult:
        """Generate `max_tokens` tokens with draft length cap `n_max` (None: the default)."""
        max_tokens = max(0, min(int(max_tokens), MAX_TOKENS_CAP))
        with self._lock:
            self._busy = True
            try:
                k_cap = self.default_n_max if n_max is None else _clamp_k(n_max)
                digest = _digest(prompt_text)
                key = (digest, k_cap)
                draw = self._draw_counts.get(key, 0)
                self._draw_counts[key] = draw + 1
                index = self._index
                self._index += 1
                result = self._generate(
                    prompt_text, digest, max_tokens, k_cap, n_min, category, index, draw
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
    ) -> GenerationResult:
        cat = category if category in CATEGORIES else classify(prompt)
        alpha = self.alphas[cat]
        k_min = 0 if n_min is None else _clamp_k(n_min)
        draws = np.random.default_rng([self.seed, digest, draw]).random(max_tokens + 1)
        accept = (draws < alpha).tolist()
        text_rng = np.random.default_rng([self.seed, digest, 0x7E47])
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
        draft_n = accepted_n = n_drafts = n_steps = 0
        per_pos = [0] * k_cap
        while produced < max_tokens:
            k = min(k_cap, max_tokens - produced - 1)
            if k < k_min:
                k = 0
            if k > 0:
                draft(self.draft_work * k)
            verify(self.verify_work * (k + 1))
            if wait_s > 0:
                time.sleep(wait_s)
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
        t2 = perf()

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
