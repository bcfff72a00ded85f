"""Harness per-request overhead against bare client loops on the same embedded engine.

All sides send the same requests (same prompt, same k, same engine seed, so the engine does
the same work for request i) to a fresh embedded server each, with no cooldown:
- bare httpx:  a loop of httpx calls (streamed: `client.stream` read to its end);
- bare stdlib: a loop of `http.client` requests on one kept-alive connection, the body read
               to its end (the least a Python client can do);
- harness:     the real Runner (controller, events, SSE folding and TTFT/ITL, plausibility
               checks, redaction, CSV + JSONL writer flushed per row, CPU sampler).
Overhead = median step-to-step interval of the harness - median interval of a bare loop.
Rounds alternate (httpx, stdlib, harness, httpx, ...) so machine noise hits all alike.
By default the requests stream (`request.stream = true`, as the harness does by default);
`--no-stream` measures the non-streamed path.

    python benchmarks/harness_overhead.py [--steps 200] [--rounds 3] [--k 4] [--max-tokens 16]

Prints measurements only (goal from issues 2 and 18: median overhead under 1 ms).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import time
import urllib.parse
from pathlib import Path

import httpx

from halospec_tui import profile as P
from halospec_tui.backends.embedded.launcher import EmbeddedServer
from halospec_tui.core.events import StepResult
from halospec_tui.session import Session


def make_profile(steps: int, k: int, max_tokens: int, stream: bool) -> P.Profile:
    p = P.embedded_default()
    p.run.modes = [f"fixed_{k}"]
    p.run.warmup = 0
    p.run.steps_fixed = steps
    p.run.cooldown_s = 0.0
    p.request.max_tokens = max_tokens
    p.request.stream = stream
    return p


def payload(p: P.Profile, k: int) -> bytes:
    body = {
        "model": p.request.model,
        "messages": [{"role": "user", "content": p.request.prompt}],
        "stream": p.request.stream,
        "max_tokens": p.request.max_tokens,
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": p.request.stop,
        "seed": p.run.seed,
    }
    if p.request.stream:
        body["stream_options"] = {"include_usage": True}
    body["speculative.n_max"] = k
    body["speculative.n_min"] = 0
    return json.dumps(body).encode()


def intervals(stamps: list[float]) -> list[float]:
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def bare_httpx(p: P.Profile, k: int) -> list[float]:
    server = EmbeddedServer.from_settings(p.embedded, seed=p.run.seed)
    url = server.start()
    data = payload(p, k)
    headers = {"Content-Type": "application/json"}
    stamps = []
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            for _ in range(p.run.steps_fixed):
                if p.request.stream:
                    with c.stream(
                        "POST", "/v1/chat/completions", content=data, headers=headers
                    ) as r:
                        for _chunk in r.iter_bytes():
                            pass
                else:
                    c.post("/v1/chat/completions", content=data, headers=headers).json()
                stamps.append(time.perf_counter())
    finally:
        server.stop()
    return intervals(stamps)


def bare_stdlib(p: P.Profile, k: int) -> list[float]:
    server = EmbeddedServer.from_settings(p.embedded, seed=p.run.seed)
    url = server.start()
    data = payload(p, k)
    headers = {"Content-Type": "application/json"}
    stamps = []
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=30)
    try:
        for _ in range(p.run.steps_fixed):
            conn.request("POST", "/v1/chat/completions", data, headers)
            resp = conn.getresponse()
            while resp.read1(65536):
                pass
            stamps.append(time.perf_counter())
    finally:
        conn.close()
        server.stop()
    return intervals(stamps)


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
    return intervals(stamps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--no-stream", action="store_true", help="measure non-streamed requests")
    a = ap.parse_args()
    p = make_profile(a.steps, a.k, a.max_tokens, stream=not a.no_stream)
    rows = []
    for r in range(a.rounds):
        bx = statistics.median(bare_httpx(p, a.k)) * 1000
        bs = statistics.median(bare_stdlib(p, a.k)) * 1000
        h = statistics.median(harness(p)) * 1000
        rows.append((bx, bs, h))
        print(
            f"round {r + 1}: bare httpx {bx:.3f} ms/request  bare http.client {bs:.3f}  "
            f"harness {h:.3f} ms/step  overhead {h - bx:+.3f} (vs httpx) {h - bs:+.3f} "
            "(vs http.client) ms",
            flush=True,
        )
    over_x = statistics.median(h - bx for bx, _, h in rows)
    over_s = statistics.median(h - bs for _, bs, h in rows)
    print(
        f"median overhead over {a.rounds} rounds of {a.steps} requests (k={a.k}, "
        f"max_tokens={a.max_tokens}, {'not ' if a.no_stream else ''}streamed): "
        f"{over_x:+.3f} ms per step vs bare httpx, {over_s:+.3f} ms vs bare http.client "
        "(goal < 1 ms)"
    )


if __name__ == "__main__":
    main()
