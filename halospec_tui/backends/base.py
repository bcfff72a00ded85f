"""What every backend gives the runner: a reply per request and a way to apply k."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


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

    @property
    def acceptance(self) -> float | None:
        if self.draft_n is None or self.draft_n_accepted is None or self.draft_n <= 0:
            return None
        return self.draft_n_accepted / self.draft_n

    @property
    def observed_k(self) -> float | None:
        """Drafted tokens per verify step (servers.md): draft_n / (predicted_n - accepted)."""
        if self.draft_n is None or self.draft_n_accepted is None or not self.predicted_n:
            return None
        steps = self.predicted_n - self.draft_n_accepted
        return self.draft_n / steps if steps > 0 else None

    @property
    def server_ms(self) -> float | None:
        if self.prompt_ms is None and self.predicted_ms is None:
            return None
        return (self.prompt_ms or 0.0) + (self.predicted_ms or 0.0)


@dataclass
class Prompt:
    id: str
    category: str
    text: str


class Backend(Protocol):
    """A server the runner talks to. `start` raises BackendUnavailable if it is not healthy."""

    kind: str  # embedded, openai, lemonade, llamacpp, llamacpp-managed, vllm
    draft_channel: str  # request, reload, pool, restart, none
    model: str
    url: str

    def start(self) -> None: ...

    def prepare_mode(self, mode: str, k: int | None) -> None:
        """Called before each mode's warmup (reload/restart channels act here)."""

    def complete(self, prompt: Prompt, k: int) -> Reply: ...

    def metrics(self) -> dict[str, float] | None:
        """Server-wide spec-decode counters (name -> value), or None if unavailable."""

    def close(self) -> None: ...
