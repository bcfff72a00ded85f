"""Any OpenAI-compatible chat server over HTTP: the client every HTTP backend builds on.

It sends one non-streaming chat completion per step, retries with exponential backoff as
HaloSpec did, and reads llama-server's `timings` (draft counters) when the server sends them.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

import httpx

from halospec_tui.backends.base import Backend, BackendUnavailable, Reply
from halospec_tui.backends.metrics import parse_spec_metrics
from halospec_tui.backends.registry import KINDS
from halospec_tui.backends.wire import Posted, Poster, WireError, direct_http
from halospec_tui.prompts import Prompt

if TYPE_CHECKING:
    from halospec_tui.profile import Profile


def reply_text(body: dict[str, Any]) -> str:
    """content, else reasoning_content, else text; what follows </think> (as HaloSpec)."""
    try:
        choice = body["choices"][0]
    except (KeyError, IndexError, TypeError):
        return ""
    msg = choice.get("message") or {}
    text = msg.get("content") or msg.get("reasoning_content") or choice.get("text") or ""
    if "</think>" in text:
        text = text.split("</think>", 1)[1]
    return text.strip()


def _num(d: dict[str, Any], key: str, cast: type = float) -> Any:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return cast(v)


def parse_reply(body: Any, latency_ms: float, attempts: int) -> Reply:
    """Turn a decoded reply body into a Reply; a body without usage is a failed step."""
    if not isinstance(body, dict):
        return Reply(False, 0.0, error="malformed reply: not a JSON object", attempts=attempts)
    if "error" in body and "choices" not in body:
        return Reply(
            False, 0.0, error=f"server error: {str(body['error'])[:200]}", attempts=attempts
        )
    usage = body.get("usage")
    tokens = _num(usage, "completion_tokens", int) if isinstance(usage, dict) else None
    if tokens is None:
        return Reply(
            False,
            0.0,
            error="reply has no usage.completion_tokens",
            attempts=attempts,
            text=reply_text(body),
            raw=body,
        )
    t = body.get("timings") if isinstance(body.get("timings"), dict) else {}
    return Reply(
        success=True,
        latency_ms=latency_ms,
        tokens=tokens,
        text=reply_text(body),
        attempts=attempts,
        prompt_n=_num(t, "prompt_n", int),
        prompt_ms=_num(t, "prompt_ms"),
        predicted_n=_num(t, "predicted_n", int),
        predicted_ms=_num(t, "predicted_ms"),
        predicted_per_second=_num(t, "predicted_per_second"),
        draft_n=_num(t, "draft_n", int),
        draft_n_accepted=_num(t, "draft_n_accepted", int),
        raw=body,
    )


_JSON = {"Content-Type": "application/json"}


class OpenAICompatBackend(Backend):
    """An already-running OpenAI-compatible server. Subclasses change paths and channels.

    It reads the per-reply draft counters when a reply has them (llama-server's `timings`)
    and the server's /metrics page when there is one."""

    kind = "openai"
    chat_path = "/v1/chat/completions"
    health_paths: tuple[str, ...] = ("/health", "/v1/models")
    metrics_path = "/metrics"
    max_keepalive = 2  # connections kept open (the pool channel talks to several servers)
    reply_counters = True
    server_metrics = True

    def __init__(
        self, profile: Profile, *, url: str | None = None, draft_channel: str = "request"
    ) -> None:
        self.profile = profile
        self.url = (url or profile.backend.url or KINDS[self.kind].default_url).rstrip("/")
        self.draft_channel = draft_channel
        self.model = profile.request.model
        self._client: httpx.Client | None = None
        self._poster: Poster | None = None
        self._direct: dict[str, bool] = {}  # URL -> takes the stdlib path (wire.direct_http)
        self._current_k: int | None = None

    # --- lifecycle ---------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        env = self.profile.backend.api_key_env
        key = os.environ.get(env, "") if env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    def client(self) -> httpx.Client:
        if self._client is None:
            r = self.profile.request
            self._client = httpx.Client(
                base_url=self.url,
                headers=self._headers(),
                timeout=httpx.Timeout(r.timeout_s, connect=min(r.timeout_s, 10.0)),
                limits=httpx.Limits(
                    max_keepalive_connections=self.max_keepalive,
                    max_connections=max(4, 2 * self.max_keepalive),
                ),
            )
        return self._client

    def start(self) -> None:
        """Check health before any mode starts; BackendUnavailable names the URL."""
        timeout = self.profile.backend.health_timeout_s
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            for path in self.health_paths:
                try:
                    resp = self.client().get(path, timeout=min(5.0, timeout))
                except httpx.HTTPError as e:
                    last = f"{e.__class__.__name__}: {e}" if str(e) else e.__class__.__name__
                    continue
                if resp.status_code < 400:
                    return
                last = f"HTTP {resp.status_code} from {path}"
            if time.monotonic() >= deadline:
                raise BackendUnavailable(self.url, f"health check failed ({last})")
            time.sleep(0.25)

    def prepare_mode(self, mode: str, k: int | None) -> None:
        self._current_k = k

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._poster is not None:
            self._poster.close()
            self._poster = None

    # --- requests ----------------------------------------------------------------------
    def request_body(self, prompt: Prompt, k: int) -> dict[str, Any]:
        r = self.profile.request
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt.text}],
            "stream": False,
            "max_tokens": r.max_tokens,
            "temperature": r.temperature,
            "top_p": r.top_p,
            "stop": list(r.stop),
            "seed": self.profile.run.seed,
        }
        if self.draft_channel == "request":
            b = self.profile.backend
            body[b.n_max_key] = k
            if b.n_min_key:
                body[b.n_min_key] = min(b.n_min, k)
        return body

    def tag_sequence(self, body: dict[str, Any], sequence: str) -> None:
        """Mark a request body with its sequence (see Backend.complete); real servers: nothing."""

    def ensure_k(self, k: int) -> None:
        """Make the server draft k before the next request (reload, restart, start a pool
        server). Runs before the clock starts; the request channel has nothing to do."""

    def url_for(self, k: int) -> str:
        """Where a request with draft length k goes (the pool channel routes by k)."""
        return self.chat_path

    def poster(self) -> Poster:
        if self._poster is None:
            r = self.profile.request
            self._poster = Poster(self._headers(), r.timeout_s, min(r.timeout_s, 10.0))
        return self._poster

    def _post(self, url: str, payload: bytes) -> Posted:
        """One timed POST: stdlib keep-alive for plain local http, httpx otherwise."""
        full = url if "://" in url else self.url + url
        direct = self._direct.get(full)
        if direct is None:  # decided once per URL: proxy settings do not change mid-run
            direct = self._direct[full] = direct_http(full)
        if direct:
            return self.poster().post(full, payload)
        t0 = time.perf_counter()
        try:
            resp = self.client().post(url, content=payload, headers=_JSON)
        except httpx.TimeoutException as e:
            raise WireError(f"timeout after {self.profile.request.timeout_s:g} s", True) from e
        except httpx.HTTPError as e:
            raise WireError(f"{e.__class__.__name__}: {e}") from e
        return Posted(resp.status_code, resp.content, (time.perf_counter() - t0) * 1000.0)

    def reply_from(self, body: Any, latency_ms: float, attempts: int) -> Reply:
        """A decoded reply body as a Reply (servers that report differently override it)."""
        return parse_reply(body, latency_ms, attempts)

    def complete(self, prompt: Prompt, k: int, *, sequence: str | None = None) -> Reply:
        r = self.profile.request
        self.ensure_k(k)
        url = self.url_for(k)
        body = self.request_body(prompt, k)
        if sequence is not None:
            self.tag_sequence(body, sequence)
        payload = json.dumps(body).encode()
        delay = r.backoff_ms / 1000.0
        error = ""
        for attempt in range(1, r.attempts + 1):
            try:
                posted = self._post(url, payload)
            except WireError as e:
                error = str(e)
            else:
                if 200 <= posted.status < 300:
                    try:
                        decoded = json.loads(posted.body)
                    except ValueError:
                        return Reply(False, 0.0, error="malformed JSON in reply", attempts=attempt)
                    return self.reply_from(decoded, posted.latency_ms, attempt)
                text = posted.body[:200].decode("utf-8", "replace")
                error = f"HTTP {posted.status}: {text}"
            if attempt < r.attempts:
                time.sleep(delay)
                delay *= 2
        return Reply(False, 0.0, error=error, attempts=r.attempts)

    def metrics(self) -> dict[str, float] | None:
        if not self.server_metrics:
            return None
        try:
            resp = self.client().get(self.metrics_path, timeout=5.0)
        except httpx.HTTPError:
            return None
        if resp.status_code != 200:
            return None
        return parse_spec_metrics(resp.text) or None
