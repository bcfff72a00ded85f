"""fixed_1 ... fixed_8 on a real llama-server, with verdicts: the table HaloSpec meant to publish.

    python benchmarks/llamacpp_k_table.py [--steps 5] [--warmup 1] [--max-tokens 64] [--adaptive]

Runs the sweep through the harness itself (backend llamacpp-managed, channel pool: one
llama-server per k, started with --spec-type draft-simple --spec-draft-n-max K and the model
as its own draft; binary and GGUF from the llamacpp extra), writes a normal run folder
(results.csv, summary.json, the servers' logs) and prints a Markdown table: latency, tokens/s,
acceptance, observed k per reply, draft tokens per draft from each server's own /metrics, and
the verdict. With --request-channel it instead runs the same sweep against ONE llama-server
through per-request keys, which a current build ignores: every row should be not_applied.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

from halospec_tui import modes
from halospec_tui import profile as P
from halospec_tui.headless import HeadlessPrinter
from halospec_tui.session import Session


def table(summary: dict[str, Any]) -> str:
    head = (
        "| mode | verdict | steps | avg ms | median ms | p95 ms | tok/s | acceptance | "
        "observed k (replies) | draft tokens per draft (/metrics) | score |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for m in summary["modes"]:
        dc = m.get("draft_control") or {}
        ev = dc.get("evidence") or {}

        def f(key: str, fmt: str, src: dict[str, Any] = m) -> str:
            v = src.get(key)
            return "-" if v is None else format(v, fmt)

        mark = " (winner)" if m["mode"] == summary.get("winner") else ""
        lines.append(
            f"| {m['mode']}{mark} | {dc.get('verdict', '-')} | {m.get('steps')} | {f('avg_ms', '.0f')} | "
            f"{f('median_ms', '.0f')} | {f('p95_ms', '.0f')} | {f('tokens_per_s', '.1f')} | "
            f"{f('acceptance', '.2f')} | {f('observed_k', '.2f')} | {f('observed_k_metrics', '.2f', ev)} | "
            f"{f('score', '.0f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--kmax", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--adaptive", action="store_true", help="add HaloSpec's adaptive mode")
    ap.add_argument(
        "--request-channel",
        action="store_true",
        help="per-request keys to one server instead (expect not_applied)",
    )
    ap.add_argument("--out", default=None, help="run folder (default runs/<timestamp>)")
    ap.add_argument("--md", metavar="FILE", help="also write the table here")
    ap.add_argument("--quiet", action="store_true", help="no line per step")
    args = ap.parse_args(argv)

    p = P.Profile(name="llamacpp-k-table")
    p.run.modes = [modes.fixed(k) for k in range(1, args.kmax + 1)] + (
        [modes.ADAPTIVE] if args.adaptive else []
    )
    p.run.warmup = args.warmup
    p.run.warmup_interval_s = 0.0
    p.run.steps_fixed = args.steps
    p.run.steps_adaptive = max(args.steps, 10)
    p.run.cooldown_s = 0.0
    p.request.max_tokens = args.max_tokens
    p.request.timeout_s = 300.0
    p.backend.kind = "llamacpp-managed"
    p.backend.draft_channel = "request" if args.request_channel else "pool"
    p.backend.threads = args.threads
    p.backend.ctx_size = 1024
    s = Session.create(p, args.out)
    if not args.quiet:
        s.bus.subscribe(HeadlessPrinter(sys.stderr))
    t0 = time.monotonic()
    try:
        s.start_backend()
        t = threading.Thread(target=s.run, daemon=True)
        t.start()
        while t.is_alive():
            t.join(0.5)
    except KeyboardInterrupt:
        s.runner.cancel()
    finally:
        s.close()
    took = time.monotonic() - t0
    summary = s.final_summary()
    md = table(summary)
    info = (
        f"{len(p.run.modes)} modes, {args.warmup} warmup + {args.steps} steps each, "
        f"{args.max_tokens} tokens per reply, channel {p.backend.draft_channel}, "
        f"{took:.0f} s, run folder {s.run_dir}"
    )
    print(md)
    print()
    print(info)
    if args.md:
        Path(args.md).write_text(md + "\n\n" + info + "\n")
    Path(s.run_dir, "k_table.md").write_text(md + "\n\n" + info + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
