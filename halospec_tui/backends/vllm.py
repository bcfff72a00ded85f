"""An already-running vLLM server (attached). Its draft length is fixed at launch
(`--speculative-config '{"num_speculative_tokens": K, ...}'`) and cannot be set per request,
so the channel is `none`: the sweep runs and says so. vLLM sends no per-reply draft counters;
the proof is `/metrics` (`vllm:spec_decode_num_drafts_total`, `..._draft_tokens_total`,
`..._accepted_tokens_total`), read before and after each mode. Other traffic on the server
during a mode skews these deltas.
"""

from __future__ import annotations

import httpx

from halospec_tui.backends.openai_compat import OpenAICompatBackend


class VllmBackend(OpenAICompatBackend):
    kind = "vllm"
    chat_path = "/v1/chat/completions"
    health_paths = ("/health", "/v1/models")
    metrics_path = "/metrics"
    reply_counters = False  # vLLM's replies carry no draft counters: /metrics is the proof

    def start(self) -> None:
        super().start()
        served = self.served_models()
        if served and self.model not in served:
            if len(served) == 1:
                self.notice(
                    "warning",
                    f"vLLM serves {served[0]!r}, not {self.model!r}: using {served[0]!r}",
                )
                self.model = served[0]
            else:
                self.notice(
                    "warning",
                    f"vLLM serves {', '.join(served)}; request.model {self.model!r} is none of them",
                )

    def served_models(self) -> list[str]:
        try:
            data = self.client().get("/v1/models", timeout=5.0).json()
        except (httpx.HTTPError, ValueError):
            return []
        items = data.get("data") if isinstance(data, dict) else None
        return [str(m["id"]) for m in items or [] if isinstance(m, dict) and "id" in m]
