"""Harness per-request overhead against a bare httpx loop on the same embedded engine.

Both sides send the same requests (same prompt, same k, same engine seed, so the engine does
the same work for request i) to a fresh embedded server each, with no cooldown:
- bare:    a loop of httpx.post calls;
- harness: the real Runner (controller, events, CSV + JSONL writer flushed per row, CPU sampler).
Overhead = median step-to-step interval of the harness − median interval of the bare loop.
Rounds alternate (bare, harness, bare, harness, ...) so machine noise hits both alike.

    python benchmarks/harness_overhead.py [--steps 200] [--rounds 3] [--k 4] [--max-tokens 16]

Prints measurements only (goal from issue 2: median overhead under 1 ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from halospec_tui import modes
from halospec_tui import profile as P
from halospec_tui.backends.embedded.launcher import EmbeddedServer
from halospec_tui.core.events import StepResult
from halospec_tui.session import Session


def make_profile(steps: int, k: int, max_tokens: int) -> P.Profile:
    p = P.embedded_default()
    p.run.modes = [modes.fixed(k)]
    p.run.warmup = 0
    p.run.steps_fixed = steps
    p.run.cooldown_s = 0.0
    p.request.max_tokens = max_tokens
    return p


def bare(p: P.Profile, k: int) -> list[float]:
    server = EmbeddedServer.from_settings(p.embedded, seed=p.run.seed)
    url = server.start()
    body = {
        "model": p.request.model,
        "messages": [{"role": "user", "content": p.request.prompt}],
        "stream": False,
        "max_tokens": p.request.max_tokens,
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": p.request.stop,
        "seed": p.run.seed,
        "speculative.n_max": k,
        "speculative.n_min": 0,
    }
    payload = json.dumps(body).encode()
    stamps = []
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            for _ in range(p.run.steps_fixed):
                r = c.post(
                    "/v1/chat/completions",
                    content=payload,
                    headers={"Content-Type": "application/json"},
                )
                r.json()
                stamps.append(time.perf_counter())
    finally:
        server.stop()
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def harness(p: P.Profile) -> list[float]:
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        s = Session.create(p, Path(d) / "run")
        s.bus.subscribe(
            lambda ev: stamps.append(time.perf_counter()) if isinstance(ev, StepResult) else None,
            inline=True,
        )
        try:
            s.start_backend()
            s.run()
        finally:
            s.close()
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=16)
    a = ap.parse_args()
    p = make_profile(a.steps, a.k, a.max_tokens)
    rows = []
    for r in range(a.rounds):
        b = statistics.median(bare(p, a.k)) * 1000
        h = statistics.median(harness(p)) * 1000
        rows.append((b, h))
        print(
            f"round {r + 1}: bare {b:.3f} ms/request  harness {h:.3f} ms/step  overhead {h - b:+.3f} ms",
            flush=True,
        )
    over = statistics.median(h - b for b, h in rows)
    print(
        f"median overhead over {a.rounds} rounds of {a.steps} requests (k={a.k}, "
        f"max_tokens={a.max_tokens}): {over:+.3f} ms per step (goal < 1 ms)"
    )


if __name__ == "__main__":
    main()
