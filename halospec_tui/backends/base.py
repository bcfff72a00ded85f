"""What every backend gives the runner: a reply per request and a way to apply k."""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from halospec_tui import redact
from halospec_tui.prompts import Prompt

INTERRUPTED = "interrupted"  # the error of a step the run's stop abandoned (results.csv)


class BackendUnavailable(RuntimeError):
    """The server did not answer its health check (exit 3 in the CLI)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


@dataclass
class Reply:
    """One request's outcome. Server counters are None when the server did not report them."""

    success: bool
    latency_ms: float  # client-side wall time of the successful attempt (0 on failure)
    tokens: int = 0  # usage.completion_tokens
    text: str = ""
    error: str = ""
    attempts: int = 1
    prompt_n: int | None = None
    prompt_ms: float | None = None
    predicted_n: int | None = None
    predicted_ms: float | None = None
    predicted_per_second: float | None = None
    draft_n: int | None = None
    draft_n_accepted: int | None = None
    raw: dict[str, Any] | None = field(default=None, repr=False)
    # streamed replies (request.stream): time to first token and the gaps between text events
    ttft_ms: float | None = None
    itl_p50_ms: float | None = None
    itl_p95_ms: float | None = None
    interrupted: bool = False  # abandoned because the run was stopped (never the server's fault)

    @classmethod
    def stopped(cls, attempts: int) -> Reply:
        """The reply of a request the run's stop abandoned."""
        return cls(False, 0.0, error=INTERRUPTED, attempts=attempts, interrupted=True)

    @property
    def acceptance(self) -> float | None:
        if self.draft_n is None or self.draft_n_accepted is None or self.draft_n <= 0:
            return None
        return self.draft_n_accepted / self.draft_n

    @property
    def verify_steps(self) -> int | None:
        """Verify steps of this reply: every step emits its accepted tokens plus one, and the
        first token comes from the prompt pass, so steps = predicted_n - accepted - 1."""
        if self.draft_n_accepted is None or not self.predicted_n:
            return None
        return verify_steps(self.predicted_n, self.draft_n_accepted)

    @property
    def observed_k(self) -> float | None:
        """Drafted tokens per verify step: draft_n / (predicted_n - accepted - 1).

        A server that honours k never exceeds k here; only the last draft of a reply, cut so
        as not to pass max_tokens, pulls it under k. On a real llama-server this equals its
        /metrics draft_tokens / drafts exactly (50 tokens in 13 drafts for predicted_n 64)."""
        steps = self.verify_steps
        if self.draft_n is None or not steps:
            return None
        return self.draft_n / steps

    @property
    def server_ms(self) -> float | None:
        if self.prompt_ms is None and self.predicted_ms is None:
            return None
        return (self.prompt_ms or 0.0) + (self.predicted_ms or 0.0)


def implausible(reply: Reply, max_tokens: int) -> str:
    """Why a successful reply's counters cannot be true ("" when they can): a negative count
    or time, more tokens than max_tokens allows (twice it, plus 16, leaves room for servers
    that count a template's tokens), more drafts accepted than drafted. Such a reply would
    otherwise count as a success with negative tokens/s, and could win."""
    most = 2 * max_tokens + 16
    counts = {
        "usage.completion_tokens": reply.tokens,
        "timings.predicted_n": reply.predicted_n,
        "timings.prompt_n": reply.prompt_n,
        "timings.draft_n": reply.draft_n,
        "timings.draft_n_accepted": reply.draft_n_accepted,
    }
    for name, v in counts.items():
        if v is None:
            continue
        if v < 0:
            return f"implausible counter: {name} = {v} (expected 0 or more)"
        if name != "timings.prompt_n" and name != "timings.draft_n" and v > most:
            return f"implausible counter: {name} = {v} (max_tokens is {max_tokens})"
    drafted, accepted = reply.draft_n, reply.draft_n_accepted
    if drafted is not None and accepted is not None and accepted > drafted:
        return f"implausible counters: timings.draft_n_accepted = {accepted} > draft_n = {drafted}"
    for name, x in (
        ("timings.prompt_ms", reply.prompt_ms),
        ("timings.predicted_ms", reply.predicted_ms),
        ("timings.predicted_per_second", reply.predicted_per_second),
    ):
        if x is not None and not (math.isfinite(x) and x >= 0):
            return f"implausible timing: {name} = {x} (expected a finite value, 0 or more)"
    return ""


def verify_steps(predicted_n: int, accepted: int) -> int | None:
    """Verify steps from llama-server's per-reply counters (None when they make no sense)."""
    steps = predicted_n - accepted - 1
    return steps if steps > 0 else None


class DraftChannelError(RuntimeError):
    """The draft channel could not set k (a reload refused, a server that would not restart)."""


class Backend(ABC):
    """A server the runner talks to: a reply per request, and a way to apply k.

    `start` raises BackendUnavailable if the server is not healthy. Everything beyond
    answering requests is declared here with a default, so no caller has to probe for it:

    * abilities (class flags): `reply_counters`, replies can carry the server's draft counters
      (draft_n, draft_n_accepted); `server_metrics`, the server has a /metrics page with
      spec-decode counters (read before and after each mode). The draft channels a kind can
      use (reload, pool, ...) are its entry in backends/registry.py.
    * hooks (no-ops here): `set_notifier(fn)` (fn(level, text) publishes a Notice),
      `set_run_dir(path)` (where server logs go), `prepare_mode` (reload/restart channels act
      there), `metrics()` and `mode_evidence()` (channel proof for the mode just measured:
      reloads and what the server confirmed, the servers used and their own counters), and
      `abort()` (any thread: stop the request in flight now, and every later one; `complete`
      then returns `Reply.stopped`).
    """

    kind: str = ""  # a key of backends.registry.KINDS
    draft_channel: str = "request"  # request, reload, pool, restart, none
    model: str = ""
    url: str = ""
    run_dir: Path | None = None
    reply_counters: ClassVar[bool] = False
    server_metrics: ClassVar[bool] = False
    _notify: Callable[[str, str], None] | None = None

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def complete(self, prompt: Prompt, k: int, *, sequence: str | None = None) -> Reply:
        """One timed request at draft length k. `sequence` names the request sequence (the
        mode) it belongs to: a server that draws its randomness per sequence (the embedded
        engine) then gives request i of every mode the same draws (common random numbers,
        which is what pairs interleaved modes); real servers ignore it."""

    @abstractmethod
    def close(self) -> None: ...

    def preflight(self) -> None:  # noqa: B027 - optional hook
        """Check what the backend's settings name on this machine (a binary, a model file)
        before anything is started or written; BackendUnavailable says what is missing. The
        session calls it before it creates the run folder, so a wrong path is bad input
        (exit 2, nothing written), not a server that failed to start."""

    def prepare_mode(self, mode: str, k: int | None) -> None:  # noqa: B027 - optional hook
        """Called before each mode's warmup with its fixed k (None for adaptive modes)."""

    def metrics(self) -> dict[str, float] | None:
        """Server-wide spec-decode counters (name -> value), or None if unavailable."""
        return None

    def mode_evidence(self) -> dict[str, Any]:
        """Channel proof for the mode just measured; {} when the channel has none to give."""
        return {}

    def set_notifier(self, notify: Callable[[str, str], None] | None) -> None:
        """fn(level, text): how the backend tells the user something (a Notice event)."""
        self._notify = notify

    def notice(self, level: str, text: str) -> None:
        if self._notify is not None:
            self._notify(level, redact.scrub(text))  # a server's words may carry a secret

    def abort(self) -> None:  # noqa: B027 - optional hook
        """Any thread: stop the request in flight now, and every later one (the run is
        stopping); `complete` then returns `Reply.stopped`."""

    def set_run_dir(self, run_dir: str | os.PathLike[str] | None) -> None:
        """The run folder, for servers that keep their logs there."""
        self.run_dir = Path(run_dir) if run_dir is not None else None

    def describe(self) -> str:
        return f"{self.kind} at {self.url}"
