"""The fixed-k baseline: the reference every adaptive controller must beat."""

from __future__ import annotations

from halospec_tui.controllers.base import Decision, Observation
from halospec_tui.modes import FIXED


class FixedController:
    """Always the same draft length, warmup included (HaloSpec's fixed_K modes)."""

    name = FIXED

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"fixed draft length must be at least 1, got {k}")
        self.k = k
        self.warmup_k = k

    def calibrate(self, warmup_latencies_ms: list[float]) -> dict[str, float | None]:
        return {}

    def decide(self) -> Decision:
        return Decision(k=self.k, reason="fixed", values={})

    def observe(self, obs: Observation) -> None:
        """Nothing to learn: a fixed mode keeps k even after a failed step, as the original did."""
