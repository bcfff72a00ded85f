"""Harness overhead on a real llama-server: client-side latency minus the server's own time.

For every request the harness measures wall time around one HTTP round trip (what goes into
results.csv as latency_ms); llama-server reports how long it spent on the prompt and on
generation (timings.prompt_ms + predicted_ms). The difference is what the harness and the
HTTP path add: JSON encoding, the socket round trip, the server's request parsing and chat
template, our reply parsing. Goal: median under 2 ms.

To tell the harness's share from the server's, every harness request is followed by the same
request from a bare stdlib client (http.client, body pre-encoded: the least any client can do)
and by a GET /health (an HTTP round trip with no work): the bare client's gap is what the
server spends outside its own timings, which no client can avoid.

    python benchmarks/harness_overhead_llamacpp.py [--requests 30] [--max-tokens 16] [--k 4]

Starts its own llama-server (binary and GGUF found as for backend llamacpp-managed: the
llamacpp extra), sends the requests through the same backend class the sweep uses, stops it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from halospec_tui import profile as P
from halospec_tui.backends.llamacpp import LlamaCppBackend
from halospec_tui.backends.llamacpp_managed import LlamaServer, find_binary, find_model
from halospec_tui.prompts import Prompt


def pct(xs: list[float], p: float) -> float:
    """Nearest rank, as the harness computes percentiles."""
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument(
        "--k", type=int, default=4, help="draft length of the server (0: no speculation)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx-size", type=int, default=1024)
    ap.add_argument("--json", metavar="FILE", help="also write the numbers here")
    ap.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra llama-server flag(s), e.g. --server-arg=--poll --server-arg=0",
    )
    args = ap.parse_args(argv)

    prof = P.Profile(name="overhead")
    prof.backend.threads = args.threads
    prof.backend.ctx_size = args.ctx_size
    prof.backend.extra_args = list(args.server_arg)
    if args.k == 0:
        prof.backend.spec_type = "none"
    prof.request.max_tokens = args.max_tokens
    prof.request.timeout_s = 300.0
    prof.request.attempts = 1
    binary, model = find_binary(prof.backend.binary), find_model(prof.backend.model_path)
    log = Path(tempfile.mkdtemp(prefix="halospec-overhead-")) / "llama-server.log"
    srv = LlamaServer(binary, model, prof.backend, k=args.k or None, log_path=log)
    t0 = time.monotonic()
    srv.start(prof.backend.startup_timeout_s)
    print(
        f"llama-server up in {time.monotonic() - t0:.1f} s at {srv.url} (log {log})",
        file=sys.stderr,
    )
    prof.backend.url = srv.url
    backend = LlamaCppBackend(prof, draft_channel="none")
    prompt = Prompt("p0", "prose", P.HALOSPEC_PROMPT)
    gaps: list[float] = []
    raw_gaps: list[float] = []
    floors: list[float] = []
    lat: list[float] = []
    # the bare minimum a client can do, for comparison: stdlib http.client, body pre-encoded
    body = json.dumps(backend.request_body(prompt, args.k or 1)).encode()
    host, port = srv.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=300)
    try:
        for i in range(args.warmup + args.requests):
            r = backend.complete(prompt, args.k or 1)
            t0 = time.perf_counter()
            conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            raw = conn.getresponse().read()
            raw_ms = (time.perf_counter() - t0) * 1000.0
            t = json.loads(raw).get("timings", {})
            if not r.success or r.server_ms is None:
                print(f"request {i} failed: {r.error or 'no timings'}", file=sys.stderr)
                continue
            t0 = time.perf_counter()
            conn.request("GET", "/health")
            conn.getresponse().read()
            floor_ms = (time.perf_counter() - t0) * 1000.0
            if i >= args.warmup:
                floors.append(floor_ms)
                gaps.append(r.latency_ms - r.server_ms)
                lat.append(r.latency_ms)
                raw_gaps.append(raw_ms - t.get("prompt_ms", 0.0) - t.get("predicted_ms", 0.0))
    finally:
        conn.close()
        backend.close()
        srv.stop()
    if not gaps:
        print("no successful request", file=sys.stderr)
        return 1
    out = {
        "requests": len(gaps),
        "max_tokens": args.max_tokens,
        "k": args.k,
        "threads": args.threads,
        "server_args": list(args.server_arg),
        "latency_ms_median": round(statistics.median(lat), 2),
        "overhead_ms_median": round(statistics.median(gaps), 3),
        "overhead_ms_p95": round(pct(gaps, 95), 3),
        "overhead_ms_min": round(min(gaps), 3),
        "overhead_ms_max": round(max(gaps), 3),
        # the same gap for a bare stdlib client: what the server itself does outside its timings
        "bare_client_gap_ms_median": round(statistics.median(raw_gaps), 3),
        "harness_minus_bare_ms_median": round(
            statistics.median(gaps) - statistics.median(raw_gaps), 3
        ),
        # an HTTP round trip with no work at all (GET /health, stdlib client)
        "loopback_floor_ms_median": round(statistics.median(floors), 3),
        "goal_ms": 2.0,
    }
    out["pass"] = out["overhead_ms_median"] < 2.0
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0 if out["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
