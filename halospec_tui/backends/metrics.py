"""Speculative-decoding counters from a Prometheus /metrics page, whichever server wrote it.

llama-server writes `llamacpp:spec_decode_*`, vLLM `vllm:spec_decode_*`, Lemonade re-exports
llama-server's as `lemonade_llamacpp_spec_decode_*`. All map to the same short names:
draft_tokens, accepted_tokens, drafts, tokens_predicted, n_decode.
"""

from __future__ import annotations

import contextlib
import re

_PREFIXES = ("llamacpp:", "vllm:", "lemonade_llamacpp_")
_NAMES = {
    "spec_decode_num_draft_tokens_total": "draft_tokens",
    "spec_decode_num_accepted_tokens_total": "accepted_tokens",
    "spec_decode_num_drafts_total": "drafts",
    "tokens_predicted_total": "tokens_predicted",
    "n_decode_total": "n_decode",
    "generation_tokens_total": "tokens_predicted",  # vLLM's name for it
}
_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)")


def parse_spec_metrics(text: str) -> dict[str, float]:
    """Sum each known counter over its label sets; unknown metrics are ignored."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        name = m.group(1)
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                short = _NAMES.get(name[len(prefix) :])
                if short:
                    with contextlib.suppress(ValueError):
                        out[short] = out.get(short, 0.0) + float(m.group(3))
                break
    return out


def delta(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, float] | None:
    if not before or not after:
        return None
    return {k: after[k] - before.get(k, 0.0) for k in after}
