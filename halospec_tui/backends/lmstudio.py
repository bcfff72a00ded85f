"""LM Studio (attached): its REST API `/api/v0/chat/completions`, whose replies carry `stats`.

LM Studio's OpenAI-compatible `/v1` endpoints say nothing about speculation; its REST API
does: every reply has `stats` with `time_to_first_token` and `generation_time` (seconds) and,
when a draft model ran, `total_draft_tokens_count`, `accepted_draft_tokens_count`,
`rejected_draft_tokens_count`, `ignored_draft_tokens_count`. This backend reads those as
llama-server's `timings` (draft_n, draft_n_accepted, prompt_ms, predicted_ms), so every step
gets observed_k = draft_n / (predicted_n − draft_n_accepted) and every mode a verdict.

Draft model: `backend.draft_model` is sent per request as `draft_model` (LM Studio's REST key).
Draft length: a model setting in LM Studio (its SDK calls it
`speculativeDecodingNumDraftTokensExact`); whether the REST API takes it per request is not
documented, so the default channel is `none` (the sweep runs and says so). Channel `request`
sends `backend.n_max_key` per request; the per-reply counters then show whether LM Studio
honoured it, and a mode where it did not is called out, never ranked. No `/metrics`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from halospec_tui.backends.base import Reply
from halospec_tui.backends.openai_compat import OpenAICompatBackend, parse_reply
from halospec_tui.prompts import Prompt

# stats key (LM Studio, seconds or counts) -> timings key (llama-server, ms or counts)
_SECONDS = {"time_to_first_token": "prompt_ms", "generation_time": "predicted_ms"}
_COUNTS = {
    "total_draft_tokens_count": "draft_n",
    "accepted_draft_tokens_count": "draft_n_accepted",
}


def stats_as_timings(body: dict[str, Any]) -> dict[str, Any]:
    """llama-server-style `timings` from an LM Studio reply's `stats` and `usage`."""
    stats = body.get("stats") if isinstance(body.get("stats"), dict) else {}
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    t: dict[str, Any] = {}
    for src, dst in _SECONDS.items():
        v = stats.get(src)
        if isinstance(v, int | float) and not isinstance(v, bool):
            t[dst] = float(v) * 1000.0
    for src, dst in _COUNTS.items():
        v = stats.get(src)
        if isinstance(v, int) and not isinstance(v, bool):
            t[dst] = v
    if isinstance(usage.get("prompt_tokens"), int):
        t["prompt_n"] = usage["prompt_tokens"]
    if isinstance(usage.get("completion_tokens"), int):
        t["predicted_n"] = usage["completion_tokens"]
    if isinstance(stats.get("tokens_per_second"), int | float):
        t["predicted_per_second"] = float(stats["tokens_per_second"])
    return t


class LMStudioBackend(OpenAICompatBackend):
    kind = "lmstudio"
    chat_path = "/api/v0/chat/completions"
    health_paths = ("/api/v0/models", "/v1/models")
    server_metrics = False  # LM Studio has no /metrics: the verdict rests on per-reply stats
    # the draft counts come in the REST reply's `stats`, documented for non-streamed replies
    # only; streamed, the verdict could lose its only evidence
    streams = False

    def request_body(self, prompt: Prompt, k: int) -> dict[str, Any]:
        body = super().request_body(prompt, k)
        if self.profile.backend.draft_model:
            body["draft_model"] = self.profile.backend.draft_model
        return body

    def reply_from(self, body: Any, latency_ms: float, attempts: int) -> Reply:
        if not (isinstance(body, dict) and "timings" not in body and "stats" in body):
            return parse_reply(body, latency_ms, attempts)
        reply = parse_reply({**body, "timings": stats_as_timings(body)}, latency_ms, attempts)
        return dataclasses.replace(reply, raw=body)  # responses.jsonl keeps what LM Studio sent
