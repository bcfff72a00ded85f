"""The embedded engine as a backend: our own speculative server in a child process."""

from __future__ import annotations

from halospec_tui.backends.base import BackendUnavailable
from halospec_tui.backends.openai_compat import OpenAICompatBackend
from halospec_tui.profile import Profile


class EmbeddedBackend(OpenAICompatBackend):
    kind = "embedded"

    def __init__(self, profile: Profile, draft_channel: str = "request") -> None:
        super().__init__(profile, url="http://127.0.0.1:0", draft_channel=draft_channel)
        self.model = "halospec-embedded"
        self._server = None

    def start(self) -> None:
        from halospec_tui.backends.embedded.launcher import EmbeddedServer

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
