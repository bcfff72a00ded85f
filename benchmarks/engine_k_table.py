"""Measure the embedded engine's k table over HTTP, with and without CPU load.

    python benchmarks/engine_k_table.py                      # prose prompt, k 1..8, both phases
    python benchmarks/engine_k_table.py --categories prose,code,json,math --reps 15
    python benchmarks/engine_k_table.py --url http://127.0.0.1:8080   # an already running server

For every phase (no load, then one burner process per core) and category it sends, round
after round, one request per k (so slow drift hits every k alike), and reports per k the
median latency, the median tokens/s (completion_tokens / client wall time), the observed
draft length draft_n / (predicted_n - draft_n_accepted) and the acceptance rate, then the
best k. The output is Markdown, ready for docs/embedded-engine.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil

from halospec_tui.backends.embedded.launcher import EmbeddedServer
from halospec_tui.procs import children as procs

PROMPTS = {
    "prose": "Explain speculative decoding in exactly ONE sentence. "
    "Start immediately with the definition (no preface).",
    "code": "Write a Python function that merges two sorted lists into one sorted list.",
    "json": "Return a JSON object describing a book with title, author, year and tags.",
    "math": "Solve step by step: a train travels 120 km in 1.5 hours; compute its average speed.",
}


@contextlib.contextmanager
def cpu_load(cores: int) -> Iterator[str]:
    """One busy process per core: the project's LoadInjector if present, else plain burners."""
    try:
        from halospec_tui.core.load import LoadInjector
    except ImportError:
        LoadInjector = None  # noqa: N806
    if LoadInjector is not None:
        inj = LoadInjector(cores)
        inj.start()
        try:
            yield f"halospec_tui.core.load.LoadInjector ({inj.cores} burners)"
        finally:
            inj.close()
        return
    n = cores or len(os.sched_getaffinity(0))
    kids = [
        procs.spawn([sys.executable, "-c", "while True: pass"], name=f"burn-{i}") for i in range(n)
    ]
    try:
        yield f"{n} x python -c 'while True: pass'"
    finally:
        for c in kids:
            c.stop()


def request(client: httpx.Client, url: str, prompt: str, k: int, max_tokens: int) -> dict[str, Any]:
    body = {
        "model": "embedded-spec",
        "messages": [{"role": "user", "content": prompt}],
        "stream": False,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "top_p": 1.0,
        "speculative.n_max": k,
    }
    t0 = time.perf_counter()
    r = client.post(url + "/v1/chat/completions", json=body)
    wall_ms = (time.perf_counter() - t0) * 1000.0
    r.raise_for_status()
    d = r.json()
    t = d["timings"]
    tokens = d["usage"]["completion_tokens"]
    steps = t["predicted_n"] - t.get("draft_n_accepted", 0)
    return {
        "latency_ms": wall_ms,
        "tps": tokens / (wall_ms / 1000.0),
        "observed_k": t.get("draft_n", 0) / steps if steps > 0 else 0.0,
        "acc": t["draft_n_accepted"] / t["draft_n"] if t.get("draft_n") else 0.0,
    }


class Interference:
    """CPU used by processes outside our own tree (other users of the machine), as a share."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.ncpu = psutil.cpu_count() or 1

    def _own(self) -> float:
        total = 0.0
        procs = [self.me]
        with contextlib.suppress(psutil.Error):
            procs += self.me.children(recursive=True)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def start(self) -> None:
        t = psutil.cpu_times()
        self._busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
        self._own0 = self._own()
        self._t0 = time.monotonic()

    def share(self) -> float:
        t = psutil.cpu_times()
        busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
        own = self._own()
        wall = max(1e-6, time.monotonic() - self._t0)
        return max(0.0, ((busy - self._busy) - (own - self._own0)) / wall / self.ncpu)


def measure(
    client: httpx.Client,
    url: str,
    prompt: str,
    ks: list[int],
    reps: int,
    warmup: int,
    max_tokens: int,
    max_foreign: float = 1.0,
    max_rounds: int = 0,
) -> tuple[dict[int, dict[str, float]], dict[str, float]]:
    """`reps` rounds of one request per k; a round during which other processes used more
    than `max_foreign` of the CPU is measured again (up to `max_rounds` rounds in all)."""
    for _ in range(warmup):
        for k in ks:
            request(client, url, prompt, k, max_tokens)
    rows: dict[int, list[dict[str, Any]]] = {k: [] for k in ks}
    mon = Interference()
    kept, dropped, foreign = 0, 0, []
    max_rounds = max_rounds or 3 * reps
    while kept < reps and kept + dropped < max_rounds:
        mon.start()
        got = {k: request(client, url, prompt, k, max_tokens) for k in ks}
        share = mon.share()
        if share > max_foreign and kept + dropped + 1 < max_rounds:
            dropped += 1
            continue
        foreign.append(share)
        kept += 1
        for k in ks:
            rows[k].append(got[k])
    out: dict[int, dict[str, float]] = {}
    for k, rs in rows.items():
        lat = sorted(r["latency_ms"] for r in rs)
        out[k] = {
            "latency_ms": statistics.median(lat),
            "p90_ms": lat[min(len(lat) - 1, int(0.9 * len(lat)))],
            "tps": statistics.median(r["tps"] for r in rs),
            "observed_k": statistics.mean(r["observed_k"] for r in rs),
            "acc": statistics.mean(r["acc"] for r in rs),
        }
    info = {
        "kept": kept,
        "dropped": dropped,
        "foreign_mean": statistics.mean(foreign) if foreign else 0.0,
    }
    return out, info


def best_k(row: dict[int, dict[str, float]]) -> int:
    return max(row, key=lambda k: row[k]["tps"])


Table = dict[str, dict[str, dict[int, dict[str, float]]]]  # phase -> category -> k -> stats


def markdown(results: Table, infos: dict[str, dict[str, dict[str, float]]], ks: list[int]) -> str:
    lines: list[str] = []
    for phase, cats in results.items():
        for cat, row in cats.items():
            b = best_k(row)
            info = infos[phase][cat]
            lines += [
                f"**{phase}, {cat}**: best k = {b} ({info['kept']:.0f} rounds kept, "
                f"{info['dropped']:.0f} redone for interference; other processes used "
                f"{100 * info['foreign_mean']:.1f} % of the CPU)",
                "",
                "| k | median latency ms | p90 ms | median tokens/s | observed k | acceptance |",
                "|---|---|---|---|---|---|",
            ]
            for k in ks:
                r = row[k]
                mark = " **best**" if k == b else ""
                lines.append(
                    f"| {k}{mark} | {r['latency_ms']:.1f} | {r['p90_ms']:.1f} | {r['tps']:.0f} "
                    f"| {r['observed_k']:.2f} | {r['acc']:.2f} |"
                )
            lines.append("")
    phases = list(results)
    cats = list(next(iter(results.values())))
    lines += [
        "| category | " + " | ".join(f"best k, {p}" for p in phases) + " |",
        "|---|" + "---|" * len(phases),
    ]
    for cat in cats:
        lines.append(
            f"| {cat} | " + " | ".join(str(best_k(results[p][cat])) for p in phases) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", default="", help="use this running server instead of starting one")
    ap.add_argument("--categories", default="prose", help="comma list of prose,code,json,math")
    ap.add_argument("--ks", default="1-8", help="e.g. 1-8 or 1,2,4,8")
    ap.add_argument("--reps", type=int, default=15, help="measured rounds (requests per k)")
    ap.add_argument("--warmup", type=int, default=1, help="warmup rounds per phase and category")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--load", choices=("none", "full", "both"), default="both")
    ap.add_argument("--cores", type=int, default=0, help="burners under load; 0 = one per core")
    ap.add_argument(
        "--max-foreign",
        type=float,
        default=0.05,
        help="redo a round when other processes used more than this share of the CPU",
    )
    ap.add_argument(
        "--max-rounds",
        type=int,
        default=0,
        help="give up redoing rounds after this many in all (0 = 3 x reps)",
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", default="", help="also write the raw table here")
    ap.add_argument(
        "server_args", nargs="*", help="extra server flags after --, e.g. -- --draft-work 3"
    )
    a = ap.parse_args(argv)
    if "-" in a.ks:
        lo, hi = (int(x) for x in a.ks.split("-"))
        ks = list(range(lo, hi + 1))
    else:
        ks = [int(x) for x in a.ks.split(",")]
    cats = [c.strip() for c in a.categories.split(",") if c.strip()]
    for c in cats:
        if c not in PROMPTS:
            ap.error(f"unknown category {c!r}")
    phases = {"none": ["no load"], "full": ["full load"], "both": ["no load", "full load"]}[a.load]

    server = None
    url = a.url.rstrip("/")
    if not url:
        server = EmbeddedServer(seed=a.seed, extra_args=a.server_args)
        url = server.start()
    results: Table = {}
    infos: dict[str, dict[str, dict[str, float]]] = {}
    load_desc = ""
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    try:
        with httpx.Client(timeout=120.0) as client:
            health = client.get(url + "/api/v1/health").json()
            for phase in phases:
                ctx = cpu_load(a.cores) if phase == "full load" else contextlib.nullcontext("")
                with ctx as desc:
                    load_desc = desc or load_desc
                    if desc:
                        time.sleep(1.0)
                    results[phase], infos[phase] = {}, {}
                    for cat in cats:
                        results[phase][cat], infos[phase][cat] = measure(
                            client,
                            url,
                            PROMPTS[cat],
                            ks,
                            a.reps,
                            a.warmup,
                            a.max_tokens,
                            a.max_foreign,
                            a.max_rounds,
                        )
                        print(
                            f"# {phase}, {cat}: best k = {best_k(results[phase][cat])} "
                            f"{infos[phase][cat]}",
                            file=sys.stderr,
                            flush=True,
                        )
    finally:
        if server is not None:
            server.close()
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    print(
        f"Measured {started:%Y-%m-%d %H:%M} UTC on {len(os.sched_getaffinity(0))} cores ({cpu}), "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}; "
        f"{a.reps} rounds (one request per k each) after {a.warmup} warmup round(s), "
        f"max_tokens {a.max_tokens}; load: {load_desc or 'none'}; {time.monotonic() - t0:.0f} s."
    )
    cfg = health.get("embedded", {})
    if cfg:
        print(f"Engine: {json.dumps(cfg, sort_keys=True)}")
    print()
    print(markdown(results, infos, ks))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "started": started.isoformat(),
                    "ks": ks,
                    "engine": cfg,
                    "interference": infos,
                    "results": {
                        p: {c: {str(k): v for k, v in row.items()} for c, row in cs.items()}
                        for p, cs in results.items()
                    },
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
