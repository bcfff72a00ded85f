"""The embedded speculative-decoding engine: physical costs, seeded acceptance.

No model runs here, but every cost is paid for real, so the draft length trade-off behaves
like a real llama-server's (docs/embedded-engine.md has the measured k table):

* **Prefill** (once per request): one target pass, i.e. CPU work that grows with the
  prompt plus one verify wait. It samples the first generated token, as llama-server does.
* **Verify steps**, until ``max_tokens`` tokens exist. The draft length of a step is
  ``k = min(n_max, remaining - 1)``, and 0 when that is below ``n_min`` (llama-server then
  drafts nothing).

  1. *Draft* ``k`` tokens, one draft-model decode (one `DraftPool` job) per token. A decode
     is ``draft_work`` work units split over the pool's ``threads`` participants, who meet
     at a barrier after every unit and spin for each other as ggml's threads do
     (draft_pool.py). So CPU load makes each drafted token several times dearer while the
     verify step (mostly a wait) barely changes, which is what moves the best k down.
  2. *Verify* ``k + 1`` tokens: ``verify_work`` work units per verified token on this
     thread (CPU), then a ``verify_wait_ms`` sleep, standing for the GPU.
  3. Draft token ``j`` (0-based) of a step that starts at output position ``p`` is accepted
     when ``u[p + j] < alpha[category]``; ``accepted`` is the leading run of successes and
     the step emits ``accepted + 1`` tokens. ``u`` comes from a generator seeded with
     ``(seed, prompt text, i)`` where ``i`` counts the earlier requests with the same prompt
     and draft length: never from timing, so the same seed and request sequence reproduce
     every counter and text, and the i-th request of every fixed-k mode sees the same
     token difficulties (common random numbers: fixed-k comparisons are not luck).

The text is filler of the prompt's category (`classify`, categories.py), one piece per
token, drawn from ``(seed, prompt text)`` (filler.py): like greedy decoding, it does not
depend on the draft length. The names of the modules beside this one stay importable from
here.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from halospec_tui.backends.embedded.categories import CATEGORIES, classify, count_tokens
from halospec_tui.backends.embedded.counters import Counters, prometheus_text
from halospec_tui.backends.embedded.draft_pool import (
    DEFAULT_POLL_US,
    DEFAULT_SPIN_US,
    VERIFY_DIM,
    WORK_DIM,
    DraftPool,
    EngineError,
    LocalWork,
    default_threads,
)
from halospec_tui.backends.embedded.filler import filler_pieces
from halospec_tui.backends.embedded.result import GenerationResult

DEFAULT_ALPHAS: dict[str, float] = {"code": 0.85, "prose": 0.72, "math": 0.78, "json": 0.9}
DEFAULT_DRAFT_WORK = 8  # work units (barriers) per drafted token
DEFAULT_VERIFY_WORK = 7  # work units per verified token (this thread only)
DEFAULT_VERIFY_WAIT_MS = 1.5  # GPU-like wait per target pass (verify step or prefill)
PREFILL_TOKENS_PER_UNIT = 16  # prefill CPU: one work unit per this many prompt tokens
CHAT_TEMPLATE_TOKENS = 8  # a chat template's tokens, added to every prompt's count
MAX_TOKENS_CAP = 8192
MAX_N_MAX = 64
_TEXT_STREAM = 0x7E47  # the text generator's third seed word (the draws use the draw index)


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _clamp_k(k: Any) -> int:
    k = int(k)
    return max(0, min(k, MAX_N_MAX))


def _checked_alphas(alphas: Mapping[str, float | None] | None) -> dict[str, float]:
    """DEFAULT_ALPHAS with the given categories' α (None keeps the default); ValueError for
    an unknown category or an α outside [0, 1]."""
    out = dict(DEFAULT_ALPHAS)
    for cat, a in (alphas or {}).items():
        if cat not in CATEGORIES:
            raise ValueError(f"unknown category {cat!r} (expected one of {CATEGORIES})")
        if a is None:
            continue
        if not 0.0 <= float(a) <= 1.0:
            raise ValueError(f"alpha for {cat} must be in [0, 1], got {a}")
        out[cat] = float(a)
    return out


def _accepted_run(accept: list[bool], start: int, k: int, per_pos: list[int]) -> int:
    """How many of the `k` tokens drafted at output position `start` are accepted: the
    leading run of successes in `accept`; counts each accepted position in `per_pos`."""
    acc = 0
    while acc < k and accept[start + acc]:
        per_pos[acc] += 1
        acc += 1
    return acc


@dataclass
class _Decoded:
    """What the verify steps of one request produced, and where their time went (s)."""

    produced: int
    per_pos: list[int]
    draft_n: int = 0
    accepted_n: int = 0
    n_drafts: int = 0
    n_steps: int = 0
    draft_s: float = 0.0
    verify_s: float = 0.0
    wait_s: float = 0.0
    seconds: float = 0.0  # all of them, end to end


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
        self.alphas = _checked_alphas(alphas)
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
                draw = self._next_draw(digest, k_cap, stream)
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

    def _next_draw(self, digest: int, k_cap: int, stream: str | None) -> int:
        """The draw index of this request: how many earlier requests had its prompt and its
        draft length (or, named, its stream). It seeds the acceptance draws."""
        key: tuple[Any, ...] = (digest, k_cap) if stream is None else (digest, stream)
        draw = self._draw_counts.get(key, 0)
        self._draw_counts[key] = draw + 1
        return draw

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
        """One request: the prefill, the verify steps, then the filler text."""
        cat = category if category in CATEGORIES else classify(prompt)
        k_min = 0 if n_min is None else _clamp_k(n_min)
        draws = np.random.default_rng([self.seed, digest, draw]).random(max_tokens + 1)
        accept = (draws < self.alphas[cat]).tolist()
        prompt_n = count_tokens(prompt) + CHAT_TEMPLATE_TOKENS
        text_rng = np.random.default_rng([self.seed, digest, _TEXT_STREAM])
        # a streaming hook gets each pass's text as it is emitted: the text is known before
        # the clock starts (one piece per token; a shorter reply's text is a prefix of it)
        pieces = filler_pieces(cat, max_tokens, text_rng) if on_tokens is not None else []

        def emit(start: int, end: int) -> None:
            on_tokens(pieces[start:end])  # type: ignore[misc]

        streaming = on_tokens is not None
        prefill_ms = self._prefill(prompt_n)
        if streaming and max_tokens > 0:
            emit(0, 1)  # the prefill samples the first token
        decoded = self._decode(accept, max_tokens, k_cap, k_min, emit if streaming else None)
        produced = decoded.produced
        if streaming:
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
            prompt_ms=prefill_ms,
            predicted_n=produced,
            predicted_ms=decoded.seconds * 1000.0,
            draft_ms=decoded.draft_s * 1000.0,
            verify_cpu_ms=decoded.verify_s * 1000.0,
            verify_wait_ms=decoded.wait_s * 1000.0,
            draft_n=decoded.draft_n,
            draft_n_accepted=decoded.accepted_n,
            n_drafts=decoded.n_drafts,
            n_steps=decoded.n_steps,
            accepted_per_pos=decoded.per_pos,
        )

    def _prefill(self, prompt_n: int) -> float:
        """One target pass over the prompt (CPU growing with its length, then the wait); ms."""
        perf = time.perf_counter
        t0 = perf()
        self._verifier.run(self.verify_work * (1 + prompt_n // PREFILL_TOKENS_PER_UNIT))
        wait_s = self.verify_wait_ms / 1000.0
        if wait_s > 0:
            time.sleep(wait_s)
        return (perf() - t0) * 1000.0

    def _decode(
        self,
        accept: list[bool],
        max_tokens: int,
        k_cap: int,
        k_min: int,
        emit: Callable[[int, int], None] | None = None,
    ) -> _Decoded:
        """Verify steps until `max_tokens` tokens exist (the prefill gave the first one);
        `emit(start, end)` after each step with the positions of the tokens it emitted."""
        perf = time.perf_counter
        t0 = perf()
        out = _Decoded(produced=1 if max_tokens > 0 else 0, per_pos=[0] * k_cap)
        while out.produced < max_tokens:
            k = min(k_cap, max_tokens - out.produced - 1)
            if k < k_min:
                k = 0
            draft_s, verify_s, wait_s = self._verify_step(k)
            out.draft_s += draft_s
            out.verify_s += verify_s
            out.wait_s += wait_s
            acc = _accepted_run(accept, out.produced, k, out.per_pos)
            out.n_steps += 1
            if k > 0:
                out.n_drafts += 1
                out.draft_n += k
                out.accepted_n += acc
            out.produced += acc + 1
            if emit is not None:
                emit(out.produced - acc - 1, out.produced)
        out.seconds = perf() - t0
        return out

    def _verify_step(self, k: int) -> tuple[float, float, float]:
        """Draft `k` tokens (one pool job each), verify `k + 1`, wait for the "GPU"; the
        seconds each part took."""
        perf = time.perf_counter
        draft, work = self._pool.run, self.draft_work
        wait_s = self.verify_wait_ms / 1000.0
        ta = perf()
        for _ in range(k):
            draft(work)
        tb = perf()
        self._verifier.run(self.verify_work * (k + 1))
        tc = perf()
        if wait_s > 0:
            time.sleep(wait_s)
        td = perf()
        return tb - ta, tc - tb, td - tc

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
