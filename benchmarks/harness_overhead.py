"""Harness per-request overhead against bare client loops on the same embedded engine.

One embedded server (one draft thread by default: no barrier spinning, so a busy machine
disturbs it less; `--threads 0` = every core) takes, in every round, a block of requests
from each of three clients, in a shuffled order:
- bare httpx:  a loop of httpx calls (streamed: `client.stream` read to its end);
- bare stdlib: a loop of `http.client` requests on one kept-alive connection, the body read
               to its end (the least a Python client can do);
- harness:     the real Runner (controller, events, SSE folding and TTFT/ITL, plausibility
               checks, redaction, CSV + JSONL writer flushed per row, CPU sampler).
All send the same request (same prompt, same k), and every block names its own request
stream (`halospec_stream`), so request i of every block meets the same acceptance draws: the
engine does the same work for each. Overhead of a round = median step-to-step
interval of its harness block - median interval of a bare block; the result is the median
over rounds (and their spread), so machine noise hits every client alike. By default the
requests stream (`request.stream = true`, the harness's default); `--no-stream` measures
the non-streamed path.

    python benchmarks/harness_overhead.py [--steps 40] [--rounds 15] [--k 4] [--max-tokens 16]

Prints measurements only (goal from issues 2 and 18: median overhead under 1 ms).
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

from halospec_tui import modes
from halospec_tui import profile as P
from halospec_tui.backends.embedded.launcher import EmbeddedServer
from halospec_tui.backends.embedded_backend import EmbeddedBackend
from halospec_tui.core.events import StepResult
from halospec_tui.session import Session


def make_profile(steps: int, k: int, max_tokens: int, stream: bool) -> P.Profile:
    p = P.embedded_default()
    p.run.modes = [modes.fixed(k)]
    p.run.warmup = 0
    p.run.steps_fixed = steps
    p.run.cooldown_s = 0.0
    p.request.max_tokens = max_tokens
    p.request.stream = stream
    return p


def payload(p: P.Profile, k: int, stream: str) -> bytes:
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
    body["halospec_stream"] = stream  # request i of every block meets the same draws
    return json.dumps(body).encode()


def intervals(stamps: list[float]) -> list[float]:
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def bare_httpx(url: str, p: P.Profile, k: int, stream: str) -> list[float]:
    data = payload(p, k, stream)
    headers = {"Content-Type": "application/json"}
    stamps = []
    with httpx.Client(base_url=url, timeout=30) as c:
        for _ in range(p.run.steps_fixed):
            if p.request.stream:
                with c.stream("POST", "/v1/chat/completions", content=data, headers=headers) as r:
                    for _chunk in r.iter_bytes():
                        pass
            else:
                c.post("/v1/chat/completions", content=data, headers=headers).json()
            stamps.append(time.perf_counter())
    return intervals(stamps)


def bare_stdlib(url: str, p: P.Profile, k: int, stream: str) -> list[float]:
    data = payload(p, k, stream)
    headers = {"Content-Type": "application/json"}
    stamps = []
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=30)
    try:
        for _ in range(p.run.steps_fixed):
            conn.request("POST", "/v1/chat/completions", data, headers)
            resp = conn.getresponse()
            while resp.read1(65536):
                pass
            resp.close()
            stamps.append(time.perf_counter())
    finally:
        conn.close()
    return intervals(stamps)


def harness(
    url: str, p: P.Profile, k: int, stream: str, outside: list[float] | None = None
) -> list[float]:
    """The real run's step-to-step intervals; `outside` gets, per step, the harness's own
    time between the end of one timed POST and the start of the next (parsing, checks,
    controller, events, files): what it adds to a bare loop, measured without the noise of
    the requests themselves."""
    stamps: list[float] = []
    spans: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as d:
        backend = EmbeddedBackend(p, attach_url=url, stream=stream)
        post = backend._post

        def timed_post(target: str, data: bytes) -> Any:
            t0 = time.perf_counter()
            try:
                return post(target, data)
            finally:
                spans.append((t0, time.perf_counter()))

        backend._post = timed_post  # type: ignore[method-assign]
        s = Session.create(p, Path(d) / "run", backend=backend)
        s.bus.subscribe(
            lambda ev: stamps.append(time.perf_counter()) if isinstance(ev, StepResult) else None,
            inline=True,
        )
        try:
            s.start_backend()
            s.run()
        finally:
            s.close()
    if outside is not None:
        outside.extend(b[0] - a[1] for a, b in zip(spans, spans[1:], strict=False))
    return intervals(stamps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40, help="requests per block")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="engine draft threads; 0 = all")
    ap.add_argument("--no-stream", action="store_true", help="measure non-streamed requests")
    a = ap.parse_args()
    p = make_profile(a.steps, a.k, a.max_tokens, stream=not a.no_stream)
    p.embedded.threads = a.threads
    outside: list[float] = []
    clients = {
        "httpx": bare_httpx,
        "stdlib": bare_stdlib,
        "harness": lambda url, p, k, stream: harness(url, p, k, stream, outside),
    }
    rng = random.Random(1)
    rounds: list[dict[str, float]] = []
    server = EmbeddedServer.from_settings(p.embedded, seed=p.run.seed)
    url = server.start()
    try:
        for _ in range(2):  # warm the server and the code paths
            bare_stdlib(url, p, a.k, "warmup")
        for r in range(a.rounds):
            order = list(clients)
            rng.shuffle(order)
            got = {
                name: statistics.median(clients[name](url, p, a.k, f"{name}-{r}")) * 1000
                for name in order
            }
            rounds.append(got)
            print(
                f"round {r + 1:2d} ({' '.join(order)}): httpx {got['httpx']:.3f} "
                f"http.client {got['stdlib']:.3f} harness {got['harness']:.3f} ms/request; "
                f"overhead {got['harness'] - got['httpx']:+.3f} (vs httpx) "
                f"{got['harness'] - got['stdlib']:+.3f} (vs http.client) ms",
                flush=True,
            )
    finally:
        server.stop()
    out_ms = sorted(x * 1000 for x in outside)
    print(
        f"harness work per step outside its timed POST: median {statistics.median(out_ms):.3f} ms, "
        f"p90 {out_ms[int(0.9 * len(out_ms))]:.3f} ms over {len(out_ms)} steps"
    )
    for bare, name in (("httpx", "bare httpx"), ("stdlib", "bare http.client")):
        over = sorted(g["harness"] - g[bare] for g in rounds)
        q1, q3 = over[len(over) // 4], over[(3 * len(over)) // 4]
        print(
            f"overhead vs {name}: median {statistics.median(over):+.3f} ms per request "
            f"(rounds' quartiles {q1:+.3f} .. {q3:+.3f}; {len(over)} rounds of {a.steps}, "
            f"k={a.k}, max_tokens={a.max_tokens}, {'not ' if a.no_stream else ''}streamed; "
            "goal < 1 ms)"
        )


if __name__ == "__main__":
    main()
