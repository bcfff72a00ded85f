"""A streamed chat reply (server-sent events), folded into one reply body and timed.

With `"stream": true` an OpenAI-compatible server sends one `data: {chunk}` event per token
(or per few tokens), then `data: [DONE]`. The wire records when each read arrived; here,
after the clock has stopped, every event gets the arrival time of the read that completed
it, and:

* time to first token (TTFT) = when the first event with text (content or reasoning)
  arrived, measured from the moment the request was sent;
* inter-token latency (ITL) = the gaps between consecutive events with text. Tokens that
  arrive in one read (a speculative verify step emits its accepted tokens at once) have gaps
  of 0, so speculation shows as ITL spread: a low p50 and a p95 near one verify step;
* the server's own counters, sent on the last chunk: llama-server's `timings` (with its
  draft counters) and `usage` (which OpenAI-compatible servers send when asked with
  `stream_options: {"include_usage": true}`), LM Studio's `stats`.

The folded body looks like a non-streamed reply (`choices[0].message`, `usage`, `timings`),
so the backends' reply parsing and every verdict work the same on both.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_BOUNDARY = re.compile(rb"\r?\n\r?\n")
_FOLDED = frozenset(("usage", "timings", "stats", "model", "id", "system_fingerprint"))


@dataclass
class Streamed:
    """A folded streamed reply: the body, or an error; and its timing."""

    body: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    events: int = 0
    ttft_ms: float | None = None
    gaps_ms: list[float] = field(default_factory=list)


def is_event_stream(content_type: str, body: bytes) -> bool:
    """Whether a reply is server-sent events (by its type, or by its first line)."""
    if "text/event-stream" in content_type.lower():
        return True
    head = body[:16].lstrip()
    return head.startswith((b"data:", b"event:", b":"))


def split_events(body: bytes, marks: tuple[tuple[float, int], ...]) -> list[tuple[float, bytes]]:
    """(arrival ms, data) per event: its `data:` lines joined, comments and other fields dropped.

    `marks` are the wire's (ms after sending, bytes received by then), in order. Events come
    in order too, so one walk along the marks stamps them all."""
    out: list[tuple[float, bytes]] = []
    i, last = 0, len(marks) - 1

    def stamp(offset: int) -> float:
        nonlocal i
        while i < last and marks[i][1] < offset:
            i += 1
        return marks[i][0] if marks else 0.0

    if b"\r" not in body:  # the usual framing: "\n\n" between events, one data line each
        start = 0
        for block in body.split(b"\n\n"):
            end = start + len(block) + 2
            if block.startswith(b"data: ") and b"\n" not in block:
                out.append((stamp(min(end, len(body))), block[6:]))
            elif block.strip():
                out.extend(_event(block, stamp(min(end, len(body)))))
            start = end
        return out
    start = 0
    for m in _BOUNDARY.finditer(body):
        out.extend(_event(body[start : m.start()], stamp(m.end())))
        start = m.end()
    if body[start:].strip():  # a last event without its blank line (the body ended)
        out.extend(_event(body[start:], stamp(len(body))))
    return out


def _event(block: bytes, t: float) -> list[tuple[float, bytes]]:
    data = [line[5:].removeprefix(b" ") for line in block.splitlines() if line.startswith(b"data:")]
    return [(t, b"\n".join(data))] if data else []


def _decode(datas: list[bytes]) -> list[Any] | None:
    """Every event's JSON at once (one parse of a JSON array: a reply has one event per
    token), else one by one; None when one is not JSON."""
    try:
        every = json.loads(b"[" + b",".join(datas) + b"]") if datas else []
    except ValueError:
        every = None
    if every is not None and len(every) == len(datas):
        return every
    try:
        return [json.loads(d) for d in datas]  # e.g. an event that is two JSON values
    except ValueError:
        return None


def _text(choice: dict[str, Any]) -> tuple[str, str]:
    """(content, reasoning) of one chunk's first choice: chat `delta`, or completions `text`."""
    delta = choice.get("delta")
    if isinstance(delta, dict):
        content = delta.get("content")
        reasoning = delta.get("reasoning_content")
        return (
            content if isinstance(content, str) else "",
            reasoning if isinstance(reasoning, str) else "",
        )
    text = choice.get("text")
    return (text if isinstance(text, str) else ""), ""


def fold(events: list[tuple[float, bytes]]) -> Streamed:
    """The events of one streamed reply as one non-streamed-looking body, with TTFT and gaps."""
    out = Streamed()
    content: list[str] = []
    reasoning: list[str] = []
    finish: Any = None
    stamps: list[float] = []
    datas: list[bytes] = []
    for _, data in events:
        if data.strip() == b"[DONE]":
            break
        datas.append(data)
    chunks = _decode(datas)
    if chunks is None:
        out.error = "malformed JSON in a streamed event"
        return out
    for (t, _), chunk in zip(events, chunks, strict=False):
        out.events += 1
        if not isinstance(chunk, dict):
            out.error = "malformed streamed event: not a JSON object"
            return out
        if "error" in chunk and not chunk.get("choices"):
            out.error = f"server error: {str(chunk['error'])[:200]}"
            return out
        for key in _FOLDED.intersection(chunk):
            if chunk[key] is not None:
                out.body[key] = chunk[key]
        choices = chunk.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            c, r = _text(choices[0])
            if c or r:
                content.append(c)
                reasoning.append(r)
                stamps.append(t)
            finish = choices[0].get("finish_reason") or finish
    if not out.events:
        out.error = "streamed reply has no events"
        return out
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
    if any(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    out.body["choices"] = [{"index": 0, "message": message, "finish_reason": finish}]
    if stamps:
        out.ttft_ms = stamps[0]
        out.gaps_ms = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return out
