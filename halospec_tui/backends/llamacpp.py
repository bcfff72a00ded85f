"""An already-running llama-server (attached): `/v1/chat/completions`, `/health`, `/metrics`.

Draft channel `request` sends llama.cpp's per-request keys (`"speculative.n_max"`,
`"speculative.n_min"`; the names are settings). Builds from about April 2026 on accept and
silently ignore them, and nothing in the reply says so: the per-reply `timings.draft_n`
counters then do not follow k and the mode's verdict is `not_applied`. The patched build
(`halospec-tui build-server`) honours them and says so in /props (`per_request_draft`); to
sweep k on a stock current llama-server use `llamacpp-managed` (one server per draft length).
"""

from __future__ import annotations

from typing import Any

import httpx

from halospec_tui.backends.openai_compat import OpenAICompatBackend

# what our patch (patches/llama-server-per-request-draft.patch) adds to /props
PER_REQUEST_MARKER = "per_request_draft"
BUILD_NOTES = {
    "patched": "patched build (/props per_request_draft): it honours a per-request draft "
    "length, so the request channel applies k on one server",
    "older": "older build: it honours per-request speculative.n_max",
    "current": "stock current build: it ignores per-request draft keys, so the request channel "
    "is not_applied; build the patched server (halospec-tui build-server) and use backend "
    'llamacpp-managed with binary = "patched", or its pool channel (one server per k)',
}


def draft_build(props: Any) -> str:
    """Which llama-server build answers, from its /props: "patched" (our patch's marker),
    "older" (it echoes speculative.n_max: builds before about April 2026 honour the key),
    "current" (neither: the key is ignored), "" (no /props to tell)."""
    if not isinstance(props, dict):
        return ""
    if props.get(PER_REQUEST_MARKER) is True:
        return "patched"
    params = (props.get("default_generation_settings") or {}).get("params") or {}
    if not params:
        return ""
    return "older" if "speculative.n_max" in params else "current"


class LlamaCppBackend(OpenAICompatBackend):
    kind = "llamacpp"
    chat_path = "/v1/chat/completions"
    health_paths = ("/health",)
    metrics_path = "/metrics"

    def start(self) -> None:
        super().start()
        build = draft_build(self.props())
        if self.draft_channel == "request" and build == "current":
            self.notice(
                "warning",
                "this llama-server is a current build that ignores per-request draft keys; "
                "expect verdict not_applied. " + BUILD_NOTES["current"],
            )
        elif self.draft_channel == "request" and build == "patched":
            self.notice("info", BUILD_NOTES["patched"])

    def props(self) -> dict[str, Any] | None:
        try:
            resp = self.client().get("/props", timeout=5.0)
            return resp.json() if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
