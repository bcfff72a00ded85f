"""Per prompt category: decode tokens/s at fixed k 1..8 and without speculation, on ONE patched
llama-server with an n-gram speculation type (no draft model), with acceptance and observed k.

    python benchmarks/llamacpp_ngram_k_table.py                      # defaults below
    python benchmarks/llamacpp_ngram_k_table.py --spec-type ngram-map-k --size-n 3 --reps 3

The patched build (`halospec-tui build-server`) takes the draft length per request, so every k
runs on the same server, interleaved in a shuffled order per prompt and repetition (machine
drift spreads over every k alike). "no spec" is `"speculative.n_max": 0` on that server: the
request drafts nothing (`--nospec-server` also runs a `--spec-type none` server as a check).

The model is the Gemma 3 270M GGUF, a BASE model without a chat template: the server gets a
pass-through template (`--jinja --chat-template` printing the message as it is), so each prompt
is a text to continue (code, then "the same code with a variable renamed:"; records, then "the
same records with a key renamed:"; a table to continue; a story opening). Greedy by default
(temperature 0; the replies can still differ slightly between k, as a batch of k+1 tokens is
not bit-identical to k+1 single steps). `--temperature 0.8` (seeded) stops this base model from
looping on prose but lowers every acceptance: docs/servers.md has both.

Per cell: tokens/s = sum(predicted_n) / sum(predicted_ms) (llama-server's own decode timing,
prompt processing excluded), acceptance = accepted / drafted, observed k = drafted tokens per
draft from the server's /metrics (read after every request), drafting = drafts per verify step.
Prints a markdown table (speed-up over no spec in brackets, best k in bold) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from halospec_tui.backends.llamacpp_managed import LlamaServer, find_binary, find_model
from halospec_tui.backends.metrics import parse_spec_metrics
from halospec_tui.profile import BackendSettings
from halospec_tui.prompts import load_suite

SUITES = {
    "code edit": "builtin:ngram-code-edit",
    "JSON transform": "builtin:ngram-json-transform",
    "list continuation": "builtin:ngram-list",
    "open prose": "builtin:ngram-open-prose",
}
# a chat template that hands the message to the model as it is (for a base model)
PASS_THROUGH = [
    "--jinja",
    "--chat-template",
    "{% for m in messages %}{{ m['content'] }}{% endfor %}",
]
SIZE_N_FLAG = {
    "ngram-simple": "--spec-ngram-simple-size-n",
    "ngram-map-k": "--spec-ngram-map-k-size-n",
    "ngram-map-k4v": "--spec-ngram-map-k4v-size-n",
}


def start(args: argparse.Namespace, spec_type: str, log: Path) -> LlamaServer:
    s = BackendSettings()
    s.spec_type = spec_type
    s.threads = args.threads
    s.ctx_size = args.ctx
    extra: list[str] = []
    if spec_type in SIZE_N_FLAG and args.size_n:
        extra += [SIZE_N_FLAG[spec_type], str(args.size_n)]
    if spec_type == "ngram-mod" and args.size_n:
        extra += ["--spec-ngram-mod-n-match", str(args.size_n)]
    s.extra_args = extra + PASS_THROUGH + list(args.extra)
    srv = LlamaServer(
        find_binary(args.binary),
        find_model(args.model),
        s,
        k=None,
        log_path=log,
        draft_max=max(args.ks) if spec_type != "none" else None,
    )
    srv.start(300.0)
    return srv


def ask(
    c: httpx.Client, text: str, k: int | None, max_tokens: int, temperature: float = 0.0
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "seed": 1,
    }
    if k is not None:
        body["speculative.n_max"] = k
    before = parse_spec_metrics(c.get("/metrics").text)
    r = c.post("/v1/chat/completions", json=body)
    r.raise_for_status()
    after = parse_spec_metrics(c.get("/metrics").text)
    t = r.json()["timings"]
    t["m_drafts"] = after.get("drafts", 0.0) - before.get("drafts", 0.0)
    t["m_draft_tokens"] = after.get("draft_tokens", 0.0) - before.get("draft_tokens", 0.0)
    t["text"] = r.json()["choices"][0]["message"]["content"]
    return t  # type: ignore[no-any-return]


def cell(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = sum(r["predicted_n"] for r in rows)
    ms = sum(r["predicted_ms"] for r in rows)
    drafted = sum(r.get("draft_n", 0) for r in rows)
    accepted = sum(r.get("draft_n_accepted", 0) for r in rows)
    drafts = sum(r["m_drafts"] for r in rows)
    steps = sum(r["predicted_n"] - r.get("draft_n_accepted", 0) - 1 for r in rows)
    return {
        "tok_s": round(1000.0 * n / ms, 2) if ms else None,
        "tokens": n,
        "acceptance": round(accepted / drafted, 3) if drafted else None,
        "observed_k": round(sum(r["m_draft_tokens"] for r in rows) / drafts, 2) if drafts else None,
        "drafting": round(drafts / steps, 3) if steps else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--binary", default="patched")
    ap.add_argument("--model", default="")
    ap.add_argument("--spec-type", default="ngram-simple")
    ap.add_argument("--size-n", type=int, default=0, help="n-gram lookup size (0: default)")
    ap.add_argument(
        "--threads", type=int, default=2, help="1 when other jobs hold the cores (barrier stalls)"
    )
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=4, help="prompts per category")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 7, 8])
    ap.add_argument("--nospec-server", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="/tmp/ngram-k-table.json")
    ap.add_argument("extra", nargs="*", help="more llama-server arguments (after --)")
    args = ap.parse_args(argv)
    rnd = random.Random(args.seed)
    logs = Path(args.out).with_suffix("")
    logs.mkdir(parents=True, exist_ok=True)
    suites = {name: load_suite(spec, "prose")[: args.prompts] for name, spec in SUITES.items()}
    settings: list[int | None] = [0, *args.ks]
    rows: dict[tuple[str, int | None], list[dict[str, Any]]] = {}
    t0 = time.monotonic()
    srv = start(args, args.spec_type, logs / "server.log")
    try:
        with httpx.Client(base_url=srv.url, timeout=600.0) as c:
            for prompts in suites.values():  # warm the prompt cache: one pass, not kept
                for p in prompts:
                    ask(c, p.text, 0, 8)
            for rep in range(args.reps):
                for name, prompts in suites.items():
                    for p in prompts:
                        order = list(settings)
                        rnd.shuffle(order)
                        texts = set()
                        for k in order:
                            t = ask(c, p.text, k, args.max_tokens, args.temperature)
                            texts.add(t.pop("text"))
                            rows.setdefault((name, k), []).append(t)
                        if len(texts) != 1:
                            print(
                                f"note: {p.id} rep {rep}: {len(texts)} different replies over k",
                                file=sys.stderr,
                            )
                print(
                    f"rep {rep + 1}/{args.reps} done at {time.monotonic() - t0:.0f} s",
                    file=sys.stderr,
                )
    finally:
        srv.stop()
    if args.nospec_server:
        srv = start(args, "none", logs / "server-nospec.log")
        try:
            with httpx.Client(base_url=srv.url, timeout=600.0) as c:
                for _ in range(args.reps):
                    for name, prompts in suites.items():
                        for p in prompts:
                            t = ask(c, p.text, None, args.max_tokens, args.temperature)
                            t.pop("text")
                            rows.setdefault((name, None), []).append(t)
        finally:
            srv.stop()
    table: dict[str, dict[str, Any]] = {}
    for name in suites:
        table[name] = {str(k): cell(rows[(name, k)]) for k in settings}
        if (name, None) in rows:
            table[name]["server none"] = cell(rows[(name, None)])
    result = {"args": vars(args), "seconds": round(time.monotonic() - t0, 1), "table": table}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(table, args))
    return 0


def markdown(table: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    ks = [str(k) for k in args.ks]
    head = (
        "| category | no spec | "
        + " | ".join(f"k={k}" for k in ks)
        + " | best k | best / no spec |"
    )
    lines = [
        f"{args.spec_type}, size_n {args.size_n or 'default'}, -t {args.threads}, "
        f"temperature {args.temperature}, {args.max_tokens} tokens, "
        f"{args.reps} reps x {args.prompts} prompts",
        "",
        head,
        "|" + "---|" * (len(ks) + 4),
    ]
    for name, cells in table.items():
        base = cells["0"]["tok_s"]
        best = max(ks, key=lambda k: cells[k]["tok_s"] or 0)
        row = [name, f"{base}"]
        for k in ks:
            c = cells[k]
            txt = (
                f"{c['tok_s']} ({c['tok_s'] / base:.2f}x; acc {c['acceptance']}, "
                f"k {c['observed_k']}, drafting {c['drafting']})"
            )
            row.append(f"**{txt}**" if k == best else txt)
        row += [best, f"{cells[best]['tok_s'] / base:.2f}x"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
