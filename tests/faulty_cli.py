"""The real `halospec-tui` command against a faulty server (tests/faulty.py): its profile,
its child process (headless, or the monitor on a pseudo-terminal), and a stop while a
request hangs, timed. Used by tests/test_faulty_server.py and
benchmarks/faulty_server_bounds.py, which measure the same thing."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import ROOT
from tests.faulty import Action, FaultyServer, hang, reply, sse, stream_chunks
from tests.helpers import ok_reply

CLI = [sys.executable, "-m", "halospec_tui"]
KEY = "sk-test-SECRET0123456789abcdef"
KEY_ENV = "HALOSPEC_TEST_API_KEY"


def cli_profile(tmp: Path, url: str, *, steps: int = 3, **request: Any) -> Path:
    """One fixed mode on an `openai` backend at `url`, no warmup, no cooldown, one attempt;
    the API key read from KEY_ENV."""
    req = {"attempts": 1, "backoff_ms": 50.0, "max_tokens": 16, **request}
    lines = [
        '[run]\nmodes = ["fixed_2"]\nwarmup = 0\ncooldown_s = 0.0',
        f'steps_fixed = {steps}\n[backend]\nkind = "openai"\nurl = "{url}"',
        f'api_key_env = "{KEY_ENV}"\n[request]',
        *(f"{k} = {json.dumps(v)}" for k, v in req.items()),
    ]
    path = tmp / "p.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cli_env() -> dict[str, str]:
    """The key set, and full replies written (so a leak into responses.jsonl would show)."""
    return {**os.environ, KEY_ENV: KEY, "HALOSPEC_DEBUG_JSON": "1"}


def rows(out: Path) -> list[dict[str, str]]:
    path = out / "results.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def wait_rows(out: Path, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(rows(out)) < n:
        assert time.monotonic() < deadline, f"fewer than {n} rows after {timeout} s"
        time.sleep(0.05)


def hanging_after(n_ok: int, stream: bool) -> Callable[[int], Action]:
    """POSTs 0..n_ok-1 answered (16 tokens, streamed or not), every later one never."""
    timings = {"prompt_n": 4, "prompt_ms": 1.0, "predicted_n": 16, "predicted_ms": 10.0}
    ok = (
        sse(stream_chunks(["t"] * 16, {"completion_tokens": 16}, timings))
        if stream
        else reply(ok_reply(tokens=16))
    )
    return lambda n: ok if n < n_ok else hang()


def pty_child(args: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """The command in a child on a pseudo-terminal (100x32), as a user runs the monitor; its
    output is drained so the child never blocks on a full terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 32, 100, 0, 0))
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env={**cli_env(), "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "32"},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)

    def drain() -> None:
        while True:
            try:
                if not os.read(master, 65536):
                    return
            except OSError:
                return

    threading.Thread(target=drain, daemon=True).start()
    return proc, master


@dataclass
class Stopped:
    took: float  # seconds from the stop to the process's exit
    returncode: int
    stdout: str = ""
    stderr: str = ""


def stop_while_hanging(
    srv: FaultyServer, tmp: Path, *, n_ok: int, how: str, monitor: bool, stream: bool
) -> Stopped:
    """Run the command on `srv` (answering `n_ok` requests, then never: `hanging_after`),
    wait until the next request is in flight, stop it with `how` (q, SIGINT or SIGTERM) and
    time the exit. The run folder is tmp/run."""
    out = tmp / "run"
    prof = cli_profile(tmp, srv.url, steps=50, timeout_s=60.0, stream=stream)
    args = [*CLI, *([] if monitor else ["--headless"]), "--profile", str(prof), "--out", str(out)]
    master = None
    if monitor:
        proc, master = pty_child(args)
    else:
        proc = subprocess.Popen(  # type: ignore[assignment]
            args, cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    stdout = stderr = b""
    try:
        wait_rows(out, n_ok)
        while len(srv.posts) < n_ok + 1:
            time.sleep(0.02)
        time.sleep(0.3)  # the next request is in flight, unanswered
        t0 = time.monotonic()
        if how == "q":
            assert master is not None, "q is a key of the monitor"
            os.write(master, b"q")
        else:
            proc.send_signal(signal.SIGINT if how == "SIGINT" else signal.SIGTERM)
        if monitor:
            proc.wait(timeout=60)
        else:
            stdout, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if master is not None:
            os.close(master)
    return Stopped(took, proc.returncode, stdout.decode(), stderr.decode())
