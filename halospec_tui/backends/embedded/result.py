"""One request's outcome, and how llama-server and LM Studio report it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
