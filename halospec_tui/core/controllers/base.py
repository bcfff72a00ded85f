"""The controller contract: pick k before each step, learn from each reply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from halospec_tui.core.events import Decision


@dataclass(frozen=True)
class Observation:
    """What a controller may learn from one step (server counters None when unreported)."""

    k: int
    success: bool
    latency_ms: float
    tokens: int = 0
    draft_n: int | None = None
    draft_n_accepted: int | None = None
    predicted_n: int | None = None
    predicted_ms: float | None = None
    prompt_ms: float | None = None
    category: str = ""

    @classmethod
    def of(cls, k: int, reply: Any, category: str = "") -> Observation:
        """The observation of `reply` (a backend Reply) to a request at draft length k."""
        return cls(
            k=k,
            success=reply.success,
            latency_ms=reply.latency_ms,
            tokens=reply.tokens,
            draft_n=reply.draft_n,
            draft_n_accepted=reply.draft_n_accepted,
            predicted_n=reply.predicted_n,
            predicted_ms=reply.predicted_ms,
            prompt_ms=reply.prompt_ms,
            category=category,
        )


class Controller(Protocol):
    name: str  # fixed, latency, acceptance, ...
    warmup_k: int  # draft length used for warmup requests

    def calibrate(self, warmup_latencies_ms: list[float]) -> dict[str, float | None]:
        """Called once after warmup with the successful warmup latencies; returns thresholds."""

    def decide(self) -> Decision:
        """The draft length for the next step, with its reason."""

    def observe(self, obs: Observation) -> None:
        """Learn from the step just run with the last decided k."""
