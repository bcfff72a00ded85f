"""An already-running llama-server (attached): `/v1/chat/completions`, `/health`, `/metrics`.

Draft channel `request` sends llama.cpp's per-request keys (`"speculative.n_max"`,
`"speculative.n_min"`; the names are settings). Builds from about April 2026 on accept and
silently ignore them, and nothing in the reply says so: the per-reply `timings.draft_n`
counters then do not follow k and the mode's verdict is `not_applied`. To sweep k on a current
llama-server use `llamacpp-managed` (one server per draft length).
"""

from __future__ import annotations

from typing import Any

import httpx

from halospec_tui.backends.openai_compat import OpenAICompatBackend


class LlamaCppBackend(OpenAICompatBackend):
    kind = "llamacpp"
    chat_path = "/v1/chat/completions"
    health_paths = ("/health",)
    metrics_path = "/metrics"

    def start(self) -> None:
        super().start()
        props = self.props()
        params = ((props or {}).get("default_generation_settings") or {}).get("params") or {}
        if self.draft_channel == "request" and params and "speculative.n_max" not in params:
            self.notice(
                "warning",
                "this llama-server does not echo speculative.n_max in /props: a current build, "
                "which ignores per-request draft keys; expect verdict not_applied "
                "(use backend llamacpp-managed to sweep k)",
            )

    def props(self) -> dict[str, Any] | None:
        try:
            resp = self.client().get("/props", timeout=5.0)
            return resp.json() if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
