"""Which Python HTTP client adds least to a timed chat request on a real llama-server.

Sends the same small chat request through four clients, interleaved in a shuffled order each
round so machine noise hits all alike, and reports each one's median gap between its wall
time and the server's own `prompt_ms + predicted_ms`:
- httpx.Client.post (what the harness used until 2026-11-24),
- httpx.HTTPTransport.handle_request (httpx without its client layer),
- httpcore.ConnectionPool.request (httpx's transport library),
- http.client with the body sent in one write with its headers (backends/wire.py, the
  harness's timed path now).

    python benchmarks/http_clients_llamacpp.py [--rounds 240] [--max-tokens 4] [--server-arg=--no-jinja]

Starts its own llama-server (binary and GGUF as for backend llamacpp-managed), stops it.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpcore
import httpx

from halospec_tui import profile as P
from halospec_tui.backends.llamacpp_managed import LlamaServer, find_binary, find_model
from halospec_tui.backends.wire import Poster

CHAT = "/v1/chat/completions"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=240)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--max-tokens", type=int, default=4)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--server-arg", action="append", default=[])
    args = ap.parse_args(argv)

    prof = P.Profile(name="clients")
    prof.backend.threads = 2
    prof.backend.ctx_size = 1024
    prof.backend.extra_args = list(args.server_arg)
    log = Path(tempfile.mkdtemp(prefix="halospec-clients-")) / "llama-server.log"
    srv = LlamaServer(
        find_binary(prof.backend.binary),
        find_model(prof.backend.model_path),
        prof.backend,
        k=args.k,
        log_path=log,
    )
    srv.start(prof.backend.startup_timeout_s)
    url = srv.url
    body = json.dumps(
        {
            "messages": [{"role": "user", "content": P.HALOSPEC_PROMPT}],
            "max_tokens": args.max_tokens,
            "temperature": 0,
            "seed": 1,
            "stream": False,
        }
    ).encode()
    headers = {"Content-Type": "application/json"}
    client = httpx.Client(base_url=url)
    transport = httpx.HTTPTransport()
    pool = httpcore.ConnectionPool()
    poster = Poster({}, 60.0, 10.0)

    def via_httpx() -> tuple[bytes, float]:
        t0 = time.perf_counter()
        raw = client.post(CHAT, content=body, headers=headers).content
        return raw, time.perf_counter() - t0

    def via_transport() -> tuple[bytes, float]:
        t0 = time.perf_counter()
        resp = transport.handle_request(
            httpx.Request("POST", url + CHAT, content=body, headers=headers)
        )
        raw = resp.read()
        resp.close()
        return raw, time.perf_counter() - t0

    def via_httpcore() -> tuple[bytes, float]:
        t0 = time.perf_counter()
        raw = pool.request("POST", url + CHAT, content=body, headers=headers).content
        return raw, time.perf_counter() - t0

    def via_wire() -> tuple[bytes, float]:
        posted = poster.post(url + CHAT, body)
        return posted.body, posted.latency_ms / 1000.0

    clients: dict[str, Callable[[], tuple[bytes, float]]] = {
        "httpx.Client.post": via_httpx,
        "httpx.HTTPTransport": via_transport,
        "httpcore.ConnectionPool": via_httpcore,
        "http.client (wire.Poster)": via_wire,
    }
    gaps: dict[str, list[float]] = {name: [] for name in clients}
    rng = random.Random(1)
    try:
        for i in range(args.warmup + args.rounds):
            order = list(clients)
            rng.shuffle(order)
            for name in order:
                raw, wall_s = clients[name]()
                t = json.loads(raw)["timings"]
                if i >= args.warmup:
                    gaps[name].append(wall_s * 1000.0 - t["prompt_ms"] - t["predicted_ms"])
    finally:
        for closer in (client.close, transport.close, pool.close, poster.close):
            closer()
        srv.stop()
    out = {name: round(statistics.median(xs), 3) for name, xs in gaps.items()}
    print(f"median gap over the server's own timings, {args.rounds} requests each (ms):")
    for name, ms in out.items():
        print(f"  {name:28s} {ms:6.3f}")
    print(json.dumps({"server_args": args.server_arg, "gap_ms_median": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
