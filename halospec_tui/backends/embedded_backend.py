"""The embedded engine as a backend: our own speculative server in a child process."""

from __future__ import annotations

from typing import Any

from halospec_tui.backends.base import BackendUnavailable, Prompt
from halospec_tui.backends.openai_compat import OpenAICompatBackend
from halospec_tui.profile import Profile


class EmbeddedBackend(OpenAICompatBackend):
    """Starts (and owns) its own engine, or attaches to one that `attach_url` names.

    `stream` (sent as the request key ``halospec_stream``) lets several backends share one
    engine and still meet the same acceptance draws request by request: an evaluation runs
    every mode on one engine, so the machine's scheduler sees one busy server, as it would
    in real use, not eleven that take turns."""

    kind = "embedded"

    def __init__(
        self,
        profile: Profile,
        draft_channel: str = "request",
        *,
        attach_url: str | None = None,
        stream: str | None = None,
    ) -> None:
        super().__init__(
            profile, url=attach_url or "http://127.0.0.1:0", draft_channel=draft_channel
        )
        self.model = "halospec-embedded"
        self._server = None
        self.attached = attach_url is not None
        self.stream = stream

    def request_body(self, prompt: Prompt, k: int) -> dict[str, Any]:
        body = super().request_body(prompt, k)
        if self.stream:
            body["halospec_stream"] = self.stream
        return body

    def tag_sequence(self, body: dict[str, Any], sequence: str) -> None:
        body["halospec_stream"] = sequence

    def start(self) -> None:
        from halospec_tui.backends.embedded.launcher import EmbeddedServer

        if self.attached:
            super().start()
            return

        self._server = EmbeddedServer.from_settings(
            self.profile.embedded, seed=self.profile.run.seed
        )
        try:
            self.url = self._server.start(timeout=max(15.0, self.profile.backend.health_timeout_s))
        except BackendUnavailable:
            self._server = None
            raise
        self.close_client()
        super().start()

    def close_client(self) -> None:
        super().close()

    def close(self) -> None:
        super().close()
        if self._server is not None:
            self._server.stop()
            self._server = None
