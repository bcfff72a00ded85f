"""A scripted in-process backend: fixed latencies and draft counters, no server, no clock.

Used where a test needs the monitor's exact screen (snapshots) or must stop the sweep at a
known request (the `gate`). Functional tests use the real embedded engine instead.
"""

from __future__ import annotations

import threading
import time

from halospec_tui.backends.base import Prompt, Reply
from halospec_tui.profile import Profile


def scripted_latency(k: int, n: int) -> float:
    """Fastest at k=5, a fixed wobble by request number: the same numbers on every run."""
    return 100.0 + 9.0 * abs(k - 5) + float((n * 37) % 13)


class ScriptedBackend:
    kind = "scripted"
    draft_channel = "request"
    model = "scripted-model"
    url = ""

    def __init__(
        self, *, delay_s: float = 0.0, gate_at: int | None = None, fail_at: set[int] | None = None
    ) -> None:
        self.delay_s = delay_s
        self.gate_at = gate_at  # the request number (1-based) that waits for `gate`
        self.gate = threading.Event()
        self.reached = threading.Event()
        self.fail_at = fail_at or set()
        self.calls = 0
        self.closed = False
        self._lock = threading.Lock()

    def start(self) -> None:
        pass

    def prepare_mode(self, mode: str, k: int | None) -> None:
        pass

    def complete(self, prompt: Prompt, k: int, *, sequence: str | None = None) -> Reply:
        with self._lock:
            self.calls += 1
            n = self.calls
        if self.gate_at is not None and n >= self.gate_at:
            self.reached.set()
            self.gate.wait(30)
        if self.delay_s:
            time.sleep(self.delay_s)
        if n in self.fail_at:
            return Reply(success=False, latency_ms=0.0, error="HTTP 503: scripted failure")
        tokens = 32
        rate = 0.85 - 0.04 * k  # per-token acceptance, lower for longer drafts
        accepted = round(tokens * rate * k / (1 + rate * k))
        draft_n = k * (tokens - accepted - 1)  # so observed k (draft_n / verify steps) == k
        return Reply(
            success=True,
            latency_ms=scripted_latency(k, n),
            tokens=tokens,
            text="ok",
            predicted_n=tokens,
            predicted_ms=50.0,
            prompt_n=8,
            prompt_ms=2.0,
            draft_n=draft_n,
            draft_n_accepted=accepted,
        )

    def metrics(self) -> dict[str, float] | None:
        return None

    def close(self) -> None:
        self.closed = True
        self.gate.set()


def scripted_profile(**run: object) -> Profile:
    p = Profile(name="snap")
    p.run.modes = ["fixed_2", "fixed_5", "adaptive"]
    p.run.warmup = 2
    p.run.warmup_interval_s = 0.0
    p.run.steps_fixed = 6
    p.run.steps_adaptive = 12
    p.run.cooldown_s = 0.0
    p.request.model = "scripted-model"
    p.load.cores = 1
    p.run.foreign_cpu_limit = 0.0  # the screen must not depend on what else the machine runs
    for k, v in run.items():
        setattr(p.run, k, v)
    return p


async def wait_until(pilot, cond, timeout: float = 30.0, step: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    """Let the app run until `cond()` holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {cond.__doc__ or cond}")
        await pilot.pause(step)


def csv_rows(run_dir) -> list:  # type: ignore[no-untyped-def]
    from halospec_tui.core.results import load_rows

    path = run_dir / "results.csv"
    return load_rows(path) if path.exists() else []
