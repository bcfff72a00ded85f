"""Any OpenAI-compatible chat server over HTTP: the client every HTTP backend builds on.

It sends one chat completion per step, streamed where the kind streams (`request.stream`,
`streams` below: then the step also gets TTFT and inter-token latency), retries with
exponential backoff as HaloSpec did (a 429/503's `Retry-After` honoured within the step's
time), and reads llama-server's `timings` (draft counters) when the server sends them.
Whatever the server sends is checked (counters that cannot be true fail the step) and
scrubbed of secrets (redact.py) before it goes further.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import TYPE_CHECKING, Any

import httpx

from halospec_tui import redact
from halospec_tui.backends import sse
from halospec_tui.backends.base import Backend, BackendUnavailable, Reply, implausible
from halospec_tui.backends.metrics import parse_spec_metrics
from halospec_tui.backends.registry import KINDS
from halospec_tui.backends.wire import (
    Guard,
    HttpxSockets,
    Posted,
    Poster,
    WireError,
    direct_http,
    post_httpx,
    retry_after_s,
)
from halospec_tui.percentile import percentile_nearest_rank
from halospec_tui.prompts import Prompt

if TYPE_CHECKING:
    from halospec_tui.profile import Profile

RETRY_AFTER_STATUS = (429, 503)


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


class _NotFinite(ValueError):
    """A counter that is NaN or infinite (Python's JSON reader accepts both)."""


def _num(d: dict[str, Any], key: str, cast: type = float, where: str = "timings") -> Any:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    if not math.isfinite(v):
        raise _NotFinite(f"implausible counter: {where}.{key} = {v} (expected a finite number)")
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
    t = body.get("timings") if isinstance(body.get("timings"), dict) else {}
    try:
        tokens = _num(usage, "completion_tokens", int, "usage") if isinstance(usage, dict) else None
        counters = {
            "prompt_n": _num(t, "prompt_n", int),
            "prompt_ms": _num(t, "prompt_ms"),
            "predicted_n": _num(t, "predicted_n", int),
            "predicted_ms": _num(t, "predicted_ms"),
            "predicted_per_second": _num(t, "predicted_per_second"),
            "draft_n": _num(t, "draft_n", int),
            "draft_n_accepted": _num(t, "draft_n_accepted", int),
        }
    except _NotFinite as e:
        return Reply(False, 0.0, error=str(e), attempts=attempts, text=reply_text(body), raw=body)
    if tokens is None:
        return Reply(
            False,
            0.0,
            error="reply has no usage.completion_tokens",
            attempts=attempts,
            text=reply_text(body),
            raw=body,
        )
    return Reply(
        success=True,
        latency_ms=latency_ms,
        tokens=tokens,
        text=reply_text(body),
        attempts=attempts,
        raw=body,
        **counters,
    )


def timed(reply: Reply, streamed: sse.Streamed) -> Reply:
    """`reply` with the stream's TTFT and inter-token latency percentiles (nearest rank)."""
    reply.ttft_ms = _r3(streamed.ttft_ms)
    reply.itl_p50_ms = _r3(percentile_nearest_rank(streamed.gaps_ms, 50.0))
    reply.itl_p95_ms = _r3(percentile_nearest_rank(streamed.gaps_ms, 95.0))
    return reply


def _r3(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


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
    # whether `request.stream = true` streams this kind's replies: servers whose streamed
    # replies carry their counters on the last chunk (llama-server's timings, OpenAI usage)
    streams = True

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
        self._guard = Guard()  # the timed request's deadline and abort, on both paths
        self._httpx_sockets = HttpxSockets(self._guard)

    def abort(self) -> None:
        """Any thread: shut the request in flight down now, and refuse every later one (the
        run is stopping). `complete` returns `Reply.stopped` for it, never a retry."""
        self._guard.abort()

    @property
    def streaming(self) -> bool:
        """Whether the timed requests stream (request.stream, where this kind streams)."""
        return self.streams and self.profile.request.stream

    # --- lifecycle ---------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        env = self.profile.backend.api_key_env
        key = os.environ.get(env, "") if env else ""
        redact.add_secret(key)  # never written or shown, even if the server echoes it
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
        env = self.profile.backend.api_key_env
        if env and not os.environ.get(env):
            self.notice(
                "warning",
                f"backend.api_key_env names {env}, which is not set: requests go without a key",
            )
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
        self._guard.close()

    # --- requests ----------------------------------------------------------------------
    def request_body(self, prompt: Prompt, k: int) -> dict[str, Any]:
        r = self.profile.request
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt.text}],
            "stream": self.streaming,
            "max_tokens": r.max_tokens,
            "temperature": r.temperature,
            "top_p": r.top_p,
            "stop": list(r.stop),
            "seed": self.profile.run.seed,
        }
        if self.streaming:  # usage on the last chunk (llama-server adds its timings anyway)
            body["stream_options"] = {"include_usage": True}
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
            self._poster = Poster(
                self._headers(),
                r.timeout_s,
                min(r.timeout_s, 10.0),
                r.max_reply_bytes,
                guard=self._guard,
            )
        return self._poster

    def _post(self, url: str, payload: bytes) -> Posted:
        """One timed POST: stdlib keep-alive for plain local http, httpx otherwise."""
        full = url if "://" in url else self.url + url
        direct = self._direct.get(full)
        if direct is None:  # decided once per URL: proxy settings do not change mid-run
            direct = self._direct[full] = direct_http(full)
        if direct:
            return self.poster().post(full, payload)
        r = self.profile.request
        return post_httpx(
            self.client(),
            url,
            payload,
            _JSON,
            timeout_s=r.timeout_s,
            max_bytes=r.max_reply_bytes,
            sockets=self._httpx_sockets,
        )

    def reply_from(self, body: Any, latency_ms: float, attempts: int) -> Reply:
        """A decoded reply body as a Reply (servers that report differently override it)."""
        return parse_reply(body, latency_ms, attempts)

    def _reply(self, posted: Posted, attempts: int) -> Reply:
        """A 2xx reply, streamed or not, as a checked Reply with its secrets scrubbed."""
        streamed: sse.Streamed | None = None
        if sse.is_event_stream(posted.content_type, posted.body):
            streamed = sse.fold(sse.split_events(posted.body, posted.marks))
            if streamed.error:
                return Reply(False, 0.0, error=redact.scrub(streamed.error), attempts=attempts)
            decoded: Any = streamed.body
        else:
            try:
                decoded = json.loads(posted.body)
            except ValueError:
                return Reply(False, 0.0, error="malformed JSON in reply", attempts=attempts)
        reply = self.reply_from(decoded, posted.latency_ms, attempts)
        if reply.success:
            bad = implausible(reply, self.profile.request.max_tokens)
            if bad:
                reply.success, reply.latency_ms, reply.error = False, 0.0, bad
            elif streamed is not None:
                timed(reply, streamed)
        # what the harness shows and writes; `raw` (the reply as sent, written only with
        # HALOSPEC_DEBUG_JSON=1) is scrubbed by the writer, so no step pays for it here
        reply.text = redact.scrub(reply.text)
        reply.error = redact.scrub(reply.error)
        return reply

    def complete(self, prompt: Prompt, k: int, *, sequence: str | None = None) -> Reply:
        """One step: up to `request.attempts` tries, each bounded by `timeout_s` (all of
        it: connect, send, the whole reply), `backoff_ms` doubling between them. A 429 or
        503 with `Retry-After` waits what the server asks (at least the backoff) if the
        step's time (attempts x timeout_s from its start) leaves room; else it fails now."""
        r = self.profile.request
        if self._guard.aborted:
            return Reply.stopped(0)
        self.ensure_k(k)
        url = self.url_for(k)
        body = self.request_body(prompt, k)
        if sequence is not None:
            self.tag_sequence(body, sequence)
        payload = json.dumps(body).encode()
        budget_end = time.monotonic() + r.attempts * r.timeout_s
        delay = r.backoff_ms / 1000.0
        error = ""
        for attempt in range(1, r.attempts + 1):
            wait = delay
            try:
                posted = self._post(url, payload)
            except WireError as e:
                if e.interrupted:
                    return Reply.stopped(attempt)
                error = redact.scrub(str(e))
            else:
                if 200 <= posted.status < 300:
                    return self._reply(posted, attempt)
                text = redact.scrub(posted.body[:200].decode("utf-8", "replace"))
                error = f"HTTP {posted.status}: {text}"
                asked = (
                    retry_after_s(posted.retry_after)
                    if posted.status in RETRY_AFTER_STATUS
                    else None
                )
                if asked is not None and attempt < r.attempts:
                    left = budget_end - time.monotonic()
                    if asked >= left:
                        error += (
                            f" (Retry-After {asked:g} s is past the step's time: "
                            f"{max(left, 0.0):.1f} s left)"
                        )
                        return Reply(False, 0.0, error=error, attempts=attempt)
                    wait = max(delay, asked)
            if attempt < r.attempts:
                if self._guard.wait_abort(wait):
                    return Reply.stopped(attempt)
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
