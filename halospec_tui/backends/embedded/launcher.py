"""Start and stop the embedded server as a child process of the harness.

    with EmbeddedServer(seed=42) as srv:
        httpx.post(srv.url + "/v1/chat/completions", json=...)

The server watches its parent (`--parent-pid`), so it exits even if the harness is killed
outright; `stop()` (and the context manager, and `procs.children.stop_all` at exit) stop it in order.
Its stderr goes to a temporary file, whose last lines explain a failed start.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import tempfile
import time
from typing import IO, Any

import httpx

from halospec_tui.backends.base import BackendUnavailable
from halospec_tui.procs.children import Child, python_child_cmd, spawn
from halospec_tui.prompts import CATEGORIES

MODULE = "halospec_tui.backends.embedded"


class EmbeddedServer:
    """The embedded engine's HTTP server, run as a child process."""

    def __init__(
        self,
        *,
        seed: int = 42,
        host: str = "127.0.0.1",
        port: int = 0,
        default_n_max: int = 3,
        ignore_request_n_max: bool = False,
        alpha_code: float | None = None,
        alpha_prose: float | None = None,
        alpha_math: float | None = None,
        alpha_json: float | None = None,
        draft_work: int | None = None,
        verify_wait_ms: float | None = None,
        verify_work: int | None = None,
        threads: int | None = None,
        extra_args: list[str] | tuple[str, ...] = (),
    ) -> None:
        self.seed = seed
        self.host = host
        self.port = port
        self.default_n_max = default_n_max
        self.ignore_request_n_max = ignore_request_n_max
        self.alphas = {
            "code": alpha_code,
            "prose": alpha_prose,
            "math": alpha_math,
            "json": alpha_json,
        }
        self.draft_work = draft_work
        self.verify_wait_ms = verify_wait_ms
        self.verify_work = verify_work
        self.threads = threads
        self.extra_args = list(extra_args)
        self._child: Child | None = None
        self._stderr: IO[bytes] | None = None
        self._url: str | None = None

    @classmethod
    def from_settings(cls, settings: Any, seed: int, **overrides: Any) -> EmbeddedServer:
        """From a profile's EmbeddedSettings (its 0 / -1 sentinels mean the engine default)."""
        kw: dict[str, Any] = {
            "seed": seed,
            "default_n_max": settings.default_n_max,
            "ignore_request_n_max": settings.ignore_request_n_max,
            "alpha_code": settings.alpha_code,
            "alpha_prose": settings.alpha_prose,
            "alpha_math": settings.alpha_math,
            "alpha_json": settings.alpha_json,
            "draft_work": settings.draft_work or None,
            "verify_wait_ms": settings.verify_wait_ms if settings.verify_wait_ms >= 0 else None,
            "verify_work": settings.verify_work if settings.verify_work >= 0 else None,
            "threads": settings.threads or None,
        }
        kw.update(overrides)
        return cls(**kw)

    # -- command line
    def args(self) -> list[str]:
        """The server's arguments (after `--parent-pid PID`)."""
        a = [
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--seed",
            str(self.seed),
            "--default-n-max",
            str(self.default_n_max),
        ]
        if self.ignore_request_n_max:
            a.append("--ignore-request-n-max")
        for cat in CATEGORIES:
            if self.alphas[cat] is not None:
                a += [f"--alpha-{cat}", repr(float(self.alphas[cat]))]  # type: ignore[arg-type]
        for flag, value in (
            ("--draft-work", self.draft_work),
            ("--verify-wait-ms", self.verify_wait_ms),
            ("--verify-work", self.verify_work),
            ("--threads", self.threads),
        ):
            if value is not None:
                a += [flag, str(value)]
        return a + self.extra_args

    # -- lifecycle
    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the embedded server is not running (call start())")
        return self._url

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def running(self) -> bool:
        return self._child is not None and self._child.alive()

    def start(self, timeout: float = 15.0) -> str:
        """Spawn the server, wait for its LISTENING line and a healthy /health; returns the URL."""
        if self.running():
            return self.url
        self._cleanup()
        deadline = time.monotonic() + timeout
        self._stderr = tempfile.TemporaryFile(prefix="halospec-embedded-", suffix=".log")  # noqa: SIM115
        self._child = spawn(
            python_child_cmd(MODULE, *self.args()),
            name="embedded",
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        try:
            url = self._read_listening(deadline)
            self._wait_healthy(url, deadline)
        except BackendUnavailable:
            self.stop()
            raise
        self._url = url
        return url

    def _fail(self, where: str, reason: str) -> BackendUnavailable:
        tail = self.stderr_tail()
        if tail:
            reason = f"{reason}; stderr: {tail}"
        return BackendUnavailable(where, reason)

    def _read_listening(self, deadline: float) -> str:
        assert self._child is not None
        popen = self._child.popen
        assert popen.stdout is not None
        fd = popen.stdout.fileno()
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail("embedded", "no LISTENING line before the start timeout")
            ready, _, _ = select.select([fd], [], [], min(left, 0.1))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    popen.wait(1.0)
                    raise self._fail(
                        "embedded", f"the server exited during startup (code {popen.returncode})"
                    )
                buf += chunk
            elif popen.poll() is not None:
                raise self._fail(
                    "embedded", f"the server exited during startup (code {popen.returncode})"
                )
        line = buf.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        if not line.startswith("LISTENING "):
            raise self._fail("embedded", f"unexpected first line {line!r}")
        return line.split(" ", 1)[1].strip().rstrip("/")

    def _wait_healthy(self, url: str, deadline: float) -> None:
        last = "no answer"
        with httpx.Client(timeout=2.0) as client:
            while True:
                try:
                    r = client.get(url + "/health")
                    if r.status_code == 200:
                        return
                    last = f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    last = f"{e.__class__.__name__}: {e}"
                if self._child is None or not self._child.alive():
                    raise self._fail(url, "the server exited before it was healthy")
                if time.monotonic() > deadline:
                    raise self._fail(url, f"/health not OK before the start timeout ({last})")
                time.sleep(0.05)

    def stderr_tail(self, lines: int = 15) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.flush()
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - 8192))
            text = self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return " | ".join(line for line in text.strip().splitlines()[-lines:] if line.strip())

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM (SIGKILL after `timeout`); the server's draft workers exit with it."""
        if self._child is not None:
            self._child.stop(timeout)
        self._url = None

    def _cleanup(self) -> None:
        if self._stderr is not None:
            with contextlib.suppress(Exception):
                self._stderr.close()
            self._stderr = None

    def close(self) -> None:
        self.stop()
        self._cleanup()

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = self._url if self._url else "stopped"
        return f"EmbeddedServer({state}, pid={self.pid})"
