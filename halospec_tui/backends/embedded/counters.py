"""Server-wide totals over every request, and their Prometheus text as llama-server names it.

`/metrics` is how a harness checks what a server really did (the draft tokens, the accepted
ones, by position), so the names and help texts follow llama-server's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from halospec_tui.backends.embedded.result import GenerationResult


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
