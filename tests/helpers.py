"""Test helpers: a misbehaving OpenAI-compatible server (real HTTP on loopback) and process checks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psutil

from halospec_tui.core.events import Event


class ScriptedServer:
    """A real HTTP server whose n-th chat reply is chosen by `script(n)`:
    a dict (sent as JSON), bytes (sent raw), an int (HTTP status) or ("sleep", s, reply).
    GET answers {"status": "ok"}, unless `get(path)` returns something else to send (the same
    kinds of action; str is sent as text/plain, None falls back to the default)."""

    def __init__(
        self, script: Callable[[int], Any], get: Callable[[str], Any] | None = None
    ) -> None:
        self.script = script
        self.get = get
        self.count = 0
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, code: int, data: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                action = outer.get(self.path) if outer.get is not None else None
                if action is None:
                    self._send(200, b'{"status":"ok"}')
                elif isinstance(action, int):
                    self._send(action, b'{"error":"scripted"}')
                elif isinstance(action, str):
                    self._send(200, action.encode(), "text/plain; version=0.0.4")
                elif isinstance(action, bytes):
                    self._send(200, action)
                else:
                    self._send(200, json.dumps(action).encode())

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(n) or b"{}")
                outer.bodies.append(body)
                i = outer.count
                outer.count += 1
                action = outer.script(i)
                if isinstance(action, tuple) and action[0] == "sleep":
                    time.sleep(action[1])
                    action = action[2]
                if isinstance(action, int):
                    self._send(action, b'{"error":"scripted"}')
                elif isinstance(action, bytes):
                    self._send(200, action)
                else:
                    self._send(200, json.dumps(action).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def ok_reply(
    tokens: int = 16, draft_n: int | None = None, accepted: int | None = None
) -> dict[str, Any]:
    timings: dict[str, Any] = {
        "prompt_n": 4,
        "prompt_ms": 1.0,
        "predicted_n": tokens,
        "predicted_ms": 10.0,
    }
    if draft_n is not None:
        timings.update(draft_n=draft_n, draft_n_accepted=accepted)
    return {
        "choices": [{"message": {"content": "ok"}}],
        "usage": {"completion_tokens": tokens},
        "timings": timings,
    }


def descendants_of(pid: int) -> list[psutil.Process]:
    """Processes that name `pid` as their parent in their command line (our children do)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            cmd = p.info["cmdline"] or []
            if (
                p.info["status"] != psutil.STATUS_ZOMBIE
                and "--parent-pid" in cmd
                and str(pid) in cmd
                or p.info["status"] != psutil.STATUS_ZOMBIE
                and "halospec_tui.procs.guard" in cmd
                and str(pid) in cmd
            ):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def wait_gone(pid: int, timeout: float = 5.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    left = descendants_of(pid)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = descendants_of(pid)
    return left


class Recorder:
    """An event-bus subscriber that keeps every event (a sweep's record, for assertions)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, ev: Event) -> None:
        self.events.append(ev)

    def of(self, tp: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, tp)]

    def notices(self) -> str:
        from halospec_tui.core.events import Notice

        return "\n".join(e.text for e in self.of(Notice))
