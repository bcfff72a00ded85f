"""HTTP front of the embedded engine, speaking llama-server's and Lemonade's protocol.

Endpoints (every path also answers under /api/v1, /api/v0, /v1 and /v0, as Lemonade serves):

* ``POST /v1/chat/completions`` (and ``/chat/completions``): OpenAI chat completion with
  llama-server's top-level ``timings``; per-request ``"speculative.n_max"`` and
  ``"speculative.n_min"`` are honoured unless ``--ignore-request-n-max`` (then accepted and
  silently ignored, like a current llama-server). With ``"stream": true`` the reply is
  server-sent events in HTTP/1.1 chunks, one event per token, and every engine pass (the
  prefill's first token, then each verify step's accepted tokens plus one) written at once,
  as it is emitted; the last chunk carries ``timings`` (and ``usage`` when
  ``stream_options.include_usage``), as llama-server's does, then ``data: [DONE]``.
* ``POST /completion`` (llama-server native), ``POST /v1/completions`` (OpenAI text).
* ``GET /health`` -> ``{"status": "ok"}``; ``GET /api/v1/health`` -> Lemonade's health with
  ``all_models_loaded`` (``recipe_options.llamacpp_args``, ``launch_command``, ``pid``).
* ``GET /v1/models``, ``GET /metrics`` (Prometheus, llama-server names), ``GET /props``,
  ``GET /api/v1/stats`` (Lemonade's last-request stats).
* ``POST /api/v1/load`` with ``llamacpp_args`` (``--spec-draft-n-max K``, ``--spec-draft-n-min``,
  ``--spec-type none``): sets the server's default draft length, like Lemonade reloading
  llama-server with new arguments; ``-md`` and the other reserved flags are rejected (400).

Requests run one at a time through the engine's lock (a single-slot server).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from halospec_tui.backends.embedded.engine import MAX_TOKENS_CAP, Engine
from halospec_tui.exitcodes import ExitCode
from halospec_tui.procs.children import watch_parent
from halospec_tui.prompts import CATEGORIES

DEFAULT_MODEL = "embedded-spec"
DEFAULT_MAX_TOKENS = 128
N_MAX_KEY = "speculative.n_max"
N_MIN_KEY = "speculative.n_min"
_PREFIXES = ("/api/v1", "/api/v0", "/v1", "/v0")
# Lemonade manages these itself and refuses them in llamacpp_args
_RESERVED = {
    "-m",
    "--model",
    "-md",
    "--model-draft",
    "--spec-draft-model",
    "--port",
    "--host",
    "-c",
    "--ctx-size",
    "--mmproj",
    "--jinja",
    "--no-webui",
    "--alias",
}
_REMOVED = {"--draft-max", "--draft-min", "--draft-p-min", "--draft", "--draft-n", "--draft-n-min"}


class RequestError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


def parse_llamacpp_args(args: str, base_n_max: int) -> tuple[int, int | None, str]:
    """(n_max, n_min or None, spec_type) from a Lemonade `llamacpp_args` string."""
    try:
        tokens = shlex.split(args or "")
    except ValueError as e:
        raise RequestError(400, f"llamacpp_args: {e}") from None
    n_max, n_min, spec_type = base_n_max, None, "draft-simple"
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        flag, eq, inline = tok.partition("=")
        if flag in _RESERVED:
            raise RequestError(
                400, f"llamacpp_args: argument '{flag}' is reserved by the server and cannot be set"
            )
        if flag in _REMOVED:
            raise RequestError(400, f"llamacpp_args: error: invalid argument: {flag}")
        value: str | None = None
        if flag in ("--spec-draft-n-max", "--spec-draft-n-min", "--spec-type"):
            if eq:
                value = inline
            elif i + 1 < len(tokens):
                i += 1
                value = tokens[i]
            else:
                raise RequestError(400, f"llamacpp_args: {flag} needs a value")
            if flag == "--spec-type":
                spec_type = value
            else:
                try:
                    n = int(value)
                except ValueError:
                    raise RequestError(
                        400, f"llamacpp_args: {flag} expects an integer, got {value!r}"
                    ) from None
                if not 0 <= n <= 64:
                    raise RequestError(400, f"llamacpp_args: {flag} must be from 0 to 64, got {n}")
                if flag == "--spec-draft-n-max":
                    n_max = n
                else:
                    n_min = n
        i += 1
    if spec_type == "none":
        n_max = 0
    return n_max, n_min, spec_type


class State:
    """What the server was started with and what /api/v1/load changed since."""

    def __init__(
        self,
        engine: Engine,
        *,
        ignore_request_n_max: bool,
        url: str = "",
        lmstudio_rest: bool = False,
    ) -> None:
        self.engine = engine
        self.ignore_request_n_max = ignore_request_n_max
        self.lmstudio_rest = lmstudio_rest
        self.start_n_max = engine.default_n_max
        self.default_n_min = 0
        self.spec_type = "draft-simple" if engine.default_n_max > 0 else "none"
        self.model_name = DEFAULT_MODEL
        self.llamacpp_args = self._args_string()
        self.url = url
        self.loads = 0
        self.last: dict[str, Any] | None = None
        self.lock = threading.Lock()

    def _args_string(self) -> str:
        return f"--spec-type {self.spec_type} --spec-draft-n-max {self.engine.default_n_max}"

    def launch_command(self) -> str:
        e = self.engine
        parts = [
            "embedded",
            "--spec-type",
            self.spec_type,
            "--spec-draft-n-max",
            str(e.default_n_max),
            "--spec-draft-n-min",
            str(self.default_n_min),
            "--seed",
            str(e.seed),
            "--threads",
            str(e.threads),
        ]
        if self.ignore_request_n_max:
            parts.append("--ignore-request-n-max")
        return " ".join(parts)

    def model_entry(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "checkpoint": "embedded",
            "recipe": "llamacpp",
            "recipe_options": {"llamacpp_args": self.llamacpp_args},
            "launch_command": self.launch_command(),
            "backend_url": self.url,
            "device": "cpu",
            "type": "llm",
            "pid": os.getpid(),
        }


def _json_default(o: Any) -> Any:
    raise TypeError(type(o).__name__)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "halospec-embedded/0.1"
    sys_version = ""
    server: EmbeddedHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    # -- plumbing
    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(
            status,
            json.dumps(obj, default=_json_default).encode(),
            "application/json; charset=utf-8",
        )

    def _error(self, e: RequestError) -> None:
        self._json(e.status, {"error": {"code": e.status, "message": e.message, "type": e.kind}})

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            data = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(400, f"invalid JSON body: {e}") from None
        if not isinstance(data, dict):
            raise RequestError(400, "the request body must be a JSON object")
        return data

    def _route(self) -> tuple[str, bool]:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        for p in _PREFIXES:
            if path == p or path.startswith(p + "/"):
                return path[len(p) :] or "/", True
        return path, False

    # -- methods
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        path, prefixed = self._route()
        routes = GET_ROUTES if method == "GET" else POST_ROUTES
        fn = routes.get(path)
        if fn is None:
            if path in GET_ROUTES or path in POST_ROUTES:
                # read (and drop) a body so keep-alive stays in sync
                with contextlib.suppress(Exception):
                    n = int(self.headers.get("Content-Length") or 0)
                    if n:
                        self.rfile.read(n)
                self._error(RequestError(405, f"method {self.command} not allowed on {self.path}"))
            else:
                with contextlib.suppress(Exception):
                    n = int(self.headers.get("Content-Length") or 0)
                    if n:
                        self.rfile.read(n)
                self._error(RequestError(404, f"no such endpoint: {self.path}", "not_found_error"))
            return
        try:
            fn(self, prefixed)
        except RequestError as e:
            self._error(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug: answer 500 rather than drop the connection
            self._error(RequestError(500, f"{e.__class__.__name__}: {e}", "server_error"))

    # -- GET handlers
    def get_health(self, prefixed: bool) -> None:
        st = self.server.state
        if not prefixed and self.path.split("?", 1)[0].rstrip("/") == "/health":
            self._json(200, {"status": "ok"})
            return
        with st.lock:
            entry = st.model_entry()
        self._json(
            200,
            {
                "status": "ok",
                "model_loaded": entry["model_name"],
                "checkpoint_loaded": entry["checkpoint"],
                "all_models_loaded": [entry],
                "embedded": {
                    **st.engine.config(),
                    "ignore_request_n_max": st.ignore_request_n_max,
                    "requests": st.engine.request_count,
                    "loads": st.loads,
                },
            },
        )

    def get_models(self, prefixed: bool) -> None:
        st = self.server.state
        created = int(self.server.started)
        model = {
            "id": st.model_name,
            "object": "model",
            "created": created,
            "owned_by": "halospec",
            "checkpoint": "embedded",
            "recipe": "llamacpp",
            "downloaded": True,
            "labels": ["llm"],
        }
        self._json(200, {"object": "list", "data": [model]})

    def get_metrics(self, prefixed: bool) -> None:
        body = self.server.state.engine.prometheus().encode()
        self._send(200, body, "text/plain; version=0.0.4; charset=utf-8")

    def get_props(self, prefixed: bool) -> None:
        st = self.server.state
        e = st.engine
        params = {
            "n_predict": -1,
            "temperature": 0.8,
            "speculative.types": st.spec_type,
            "speculative.n_max": e.default_n_max,
            "speculative.n_min": st.default_n_min,
        }
        self._json(
            200,
            {
                "default_generation_settings": {"n_ctx": 4096, "params": params},
                "total_slots": 1,
                "model_path": "embedded",
                "build_info": "embedded",
            },
        )

    def get_stats(self, prefixed: bool) -> None:
        last = self.server.state.last
        if last is None:
            self._json(
                200,
                {
                    "time_to_first_token": None,
                    "tokens_per_second": None,
                    "input_tokens": None,
                    "output_tokens": None,
                },
            )
        else:
            self._json(200, last)

    # -- POST handlers
    def post_chat(self, prefixed: bool) -> None:
        data = self._body()
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "'messages' must be a non-empty array")
        prompt = _messages_text(messages)
        keys = ("max_tokens", "max_completion_tokens", "n_predict")
        if data.get("stream") is True:
            self._stream_chat(data, prompt, keys)
            return
        result, model = self._run(data, prompt, keys)
        reply: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "b0-embedded",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "length",
                    "message": {"role": "assistant", "content": result.text},
                }
            ],
            "usage": _usage(result),
        }
        if self.server.state.lmstudio_rest and self._lmstudio_path():
            # LM Studio's REST API: `stats` (seconds) and model/runtime info, no `timings`
            draft = data.get("draft_model")
            reply["stats"] = result.lmstudio_stats(draft if isinstance(draft, str) else model)
            reply["model_info"] = {"arch": "halospec-embedded", "format": "gguf"}
            reply["runtime"] = {"name": "halospec-embedded", "version": "0"}
        else:
            reply["timings"] = result.timings()
        self._json(200, reply)

    def _stream_chat(self, data: dict[str, Any], prompt: str, keys: tuple[str, ...]) -> None:
        """The chat reply as server-sent events, each engine pass's tokens written at once."""
        st = self.server.state
        model = data.get("model") if isinstance(data.get("model"), str) else st.model_name
        events = EventStream(self, model)
        result, _ = self._run(data, prompt, keys, on_tokens=events.tokens)
        final: dict[str, Any] = {"timings": result.timings()}
        options = data.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            final["usage"] = _usage(result)
        if st.lmstudio_rest and self._lmstudio_path():
            draft = data.get("draft_model")
            final["stats"] = result.lmstudio_stats(draft if isinstance(draft, str) else model)
        events.finish(final)

    def _lmstudio_path(self) -> bool:
        return self.path.split("?", 1)[0].startswith("/api/v0/")

    def post_text_completion(self, prefixed: bool) -> None:
        data = self._body()
        prompt = _prompt_text(data.get("prompt"))
        result, model = self._run(data, prompt, ("max_tokens", "n_predict"))
        self._json(
            200,
            {
                "id": f"cmpl-{uuid.uuid4().hex[:24]}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {"index": 0, "text": result.text, "finish_reason": "length", "logprobs": None}
                ],
                "usage": _usage(result),
                "timings": result.timings(),
            },
        )

    def post_completion(self, prefixed: bool) -> None:
        if prefixed:  # /v1/completions is the OpenAI one
            self.post_text_completion(prefixed)
            return
        data = self._body()
        prompt = _prompt_text(data.get("prompt"))
        result, model = self._run(data, prompt, ("n_predict", "max_tokens"))
        self._json(
            200,
            {
                "content": result.text,
                "id_slot": 0,
                "stop": True,
                "model": model,
                "tokens_predicted": result.predicted_n,
                "tokens_evaluated": result.prompt_n,
                "stop_type": "limit",
                "stopping_word": "",
                "truncated": False,
                "timings": result.timings(),
            },
        )

    def post_load(self, prefixed: bool) -> None:
        data = self._body()
        st = self.server.state
        name = data.get("model_name") or data.get("model")
        if not isinstance(name, str) or not name:
            raise RequestError(400, "'model_name' is required")
        args = data.get("llamacpp_args")
        if args is None and isinstance(data.get("recipe_options"), dict):
            args = data["recipe_options"].get("llamacpp_args")
        if args is None:
            args = ""
        if not isinstance(args, str):
            raise RequestError(400, "'llamacpp_args' must be a string")
        n_max, n_min, spec_type = parse_llamacpp_args(args, st.start_n_max)
        with st.lock:
            # a reload is a restart of llama-server: it waits for the running request
            st.engine.set_default_n_max(n_max)
            st.default_n_min = n_min or 0
            st.spec_type = spec_type if n_max > 0 else "none"
            st.model_name = name
            st.llamacpp_args = args
            st.loads += 1
        self._json(200, {"status": "success", "message": f"Loaded model: {name}"})

    def post_unload(self, prefixed: bool) -> None:
        self._body_optional()
        self._json(200, {"status": "success", "message": "Models unloaded"})

    def _body_optional(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)

    # -- generation
    def _run(
        self,
        data: dict[str, Any],
        prompt: str,
        max_keys: tuple[str, ...],
        on_tokens: Any = None,
    ) -> tuple[Any, str]:
        st = self.server.state
        max_tokens = DEFAULT_MAX_TOKENS
        for key in max_keys:
            if data.get(key) is not None:
                max_tokens = _int_field(data, key, lo=-1, hi=10**9)
                if max_tokens < 0:
                    max_tokens = DEFAULT_MAX_TOKENS
                break
        max_tokens = min(max_tokens, MAX_TOKENS_CAP)
        for key in ("temperature", "top_p"):
            if key in data and data[key] is not None and not _is_number(data[key]):
                raise RequestError(400, f"'{key}' must be a number")
        n_max = (
            _int_field(data, N_MAX_KEY, lo=0, hi=10**6) if data.get(N_MAX_KEY) is not None else None
        )
        n_min = (
            _int_field(data, N_MIN_KEY, lo=0, hi=10**6) if data.get(N_MIN_KEY) is not None else None
        )
        if st.ignore_request_n_max:
            n_max = n_min = None
        if n_min is None:
            n_min = st.default_n_min
        category = data.get("halospec_category")
        if category not in CATEGORIES:
            category = None
        stream = data.get("halospec_stream")
        if not isinstance(stream, str) or not stream:
            stream = None
        model = data.get("model") if isinstance(data.get("model"), str) else st.model_name
        result = st.engine.generate(
            prompt, max_tokens, n_max, n_min, category=category, stream=stream, on_tokens=on_tokens
        )
        st.last = {
            "time_to_first_token": round(result.prompt_ms / 1000.0, 6),
            "tokens_per_second": round(result.predicted_per_second, 3),
            "input_tokens": result.prompt_n,
            "output_tokens": result.predicted_n,
            "prompt_tokens": result.prompt_n,
            "embedded": {
                "n_max": result.n_max,
                "category": result.category,
                "draft_ms": round(result.draft_ms, 3),
                "verify_cpu_ms": round(result.verify_cpu_ms, 3),
                "verify_wait_ms": round(result.verify_wait_ms, 3),
                "predicted_ms": round(result.predicted_ms, 3),
                "draft_n": result.draft_n,
                "steps": result.n_steps,
            },
        }
        return result, model


class EventStream:
    """A chat reply as server-sent events in HTTP/1.1 chunks (so the connection stays alive).

    `tokens(pieces)` writes one event per token, all of one engine pass in one write, so a
    client sees a verify step's tokens arrive together; the status line and headers go out
    with the first of them (a request refused before generating still gets a JSON error).
    A client that went away stops the writing, never the engine."""

    def __init__(self, handler: Handler, model: str) -> None:
        self.handler = handler
        self.started = False
        self.broken = False
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self.head = head
        prefix = json.dumps(head)[:-1] + ', "choices": [{"index": 0, "delta": {"content": '
        self.prefix = ("data: " + prefix).encode()
        self.suffix = b'}, "finish_reason": null}]}\n\n'

    def tokens(self, pieces: list[str]) -> None:
        self._chunk(b"".join(self.prefix + json.dumps(p).encode() + self.suffix for p in pieces))

    def finish(self, final: dict[str, Any]) -> None:
        last = {
            **self.head,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
            **final,
        }
        self._chunk(b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n", end=True)

    def _chunk(self, data: bytes, end: bool = False) -> None:
        if self.broken:
            return
        h = self.handler
        try:
            if not self.started:
                self.started = True
                h.send_response(200)
                h.send_header("Content-Type", "text/event-stream")
                h.send_header("Cache-Control", "no-cache")
                h.send_header("Transfer-Encoding", "chunked")
                h.end_headers()
            h.wfile.write(b"%x\r\n%s\r\n%s" % (len(data), data, b"0\r\n\r\n" if end else b""))
        except OSError:
            self.broken = True
            h.close_connection = True


GET_ROUTES = {
    "/health": Handler.get_health,
    "/models": Handler.get_models,
    "/metrics": Handler.get_metrics,
    "/props": Handler.get_props,
    "/stats": Handler.get_stats,
}
POST_ROUTES = {
    "/chat/completions": Handler.post_chat,
    "/completion": Handler.post_completion,
    "/completions": Handler.post_completion,
    "/load": Handler.post_load,
    "/unload": Handler.post_unload,
}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _int_field(data: dict[str, Any], key: str, *, lo: int, hi: int) -> int:
    v = data.get(key)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise RequestError(400, f"'{key}' must be an integer, got {v!r}")
    if not lo <= v <= hi:
        raise RequestError(400, f"'{key}' must be from {lo} to {hi}, got {v}")
    return v


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type", "text") == "text"
        )
    if content is None:
        return ""
    raise RequestError(400, "message 'content' must be a string or an array of parts")


def _messages_text(messages: list[Any]) -> str:
    parts = []
    for m in messages:
        if not isinstance(m, dict):
            raise RequestError(400, "each message must be an object")
        parts.append(_content_text(m.get("content")))
    return "\n".join(parts)


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    raise RequestError(400, "'prompt' must be a string")


def _usage(result: Any) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_n,
        "completion_tokens": result.predicted_n,
        "total_tokens": result.prompt_n + result.predicted_n,
    }


class EmbeddedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], state: State) -> None:
        super().__init__(address, Handler)
        self.state = state
        self.started = time.time()
        host, port = self.server_address[:2]
        self.url = f"http://{host}:{port}"
        state.url = self.url


# --- command line ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m halospec_tui.backends.embedded",
        description="Embedded speculative-decoding server (llama-server / Lemonade protocol).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = a free port")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    p.add_argument(
        "--default-n-max", type=int, default=3, help="draft length without a request key"
    )
    p.add_argument(
        "--ignore-request-n-max",
        action="store_true",
        help="accept and ignore speculative.n_max/n_min (like a current llama-server)",
    )
    p.add_argument(
        "--lmstudio-rest",
        action="store_true",
        help="answer /api/v0/chat/completions as LM Studio's REST API does (stats, no timings)",
    )
    for cat in CATEGORIES:
        p.add_argument(
            f"--alpha-{cat}", type=float, default=None, help=f"acceptance rate, {cat} prompts"
        )
    p.add_argument("--draft-work", type=int, default=None, help="work units per drafted token")
    p.add_argument(
        "--verify-wait-ms", type=float, default=None, help="GPU-like wait per target pass"
    )
    p.add_argument("--verify-work", type=int, default=None, help="work units per verified token")
    p.add_argument("--threads", type=int, default=None, help="draft participants (0 = every core)")
    p.add_argument("--spin-us", type=float, default=None, help="barrier spin before blocking")
    p.add_argument(
        "--poll-us", type=float, default=None, help="draft worker polls for work this long"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop = threading.Event()
    httpd: EmbeddedHTTPServer | None = None

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            return
        stop.set()
        if httpd is not None:
            threading.Thread(target=httpd.shutdown, daemon=True).start()
        else:
            raise SystemExit(ExitCode.OK)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.parent_pid:
        watch_parent(args.parent_pid)
    try:
        alphas = {c: getattr(args, f"alpha_{c}") for c in CATEGORIES}
        if any(a is not None and not 0.0 <= a <= 1.0 for a in alphas.values()):
            print("embedded: alphas must be from 0 to 1", file=sys.stderr)
            return ExitCode.INPUT
        if not 0 <= args.default_n_max <= 64:
            print("embedded: --default-n-max must be from 0 to 64", file=sys.stderr)
            return ExitCode.INPUT
        engine = Engine(
            seed=args.seed,
            default_n_max=args.default_n_max,
            alphas=alphas,
            draft_work=args.draft_work,
            verify_wait_ms=args.verify_wait_ms,
            verify_work=args.verify_work,
            threads=args.threads,
            spin_us=args.spin_us,
            poll_us=args.poll_us,
        )
    except SystemExit:
        return ExitCode.OK
    try:
        state = State(
            engine,
            ignore_request_n_max=args.ignore_request_n_max,
            lmstudio_rest=args.lmstudio_rest,
        )
        try:
            httpd = EmbeddedHTTPServer((args.host, args.port), state)
        except OSError as e:
            print(f"embedded: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
            return ExitCode.ERROR
        if stop.is_set():
            return ExitCode.OK
        try:
            sys.stdout.write(f"LISTENING {httpd.url}\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass
        try:
            httpd.serve_forever(poll_interval=0.2)
        finally:
            httpd.server_close()
    except SystemExit:
        pass
    finally:
        engine.close()
    return ExitCode.OK
