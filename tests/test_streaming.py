"""Streamed replies (issue 18 item 5): SSE framing and timing, the embedded engine's event
stream, and TTFT / inter-token latency through a whole run to results.csv and summary.json."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from halospec_tui.backends.base import Prompt
from halospec_tui.backends.embedded.launcher import EmbeddedServer
from halospec_tui.backends.embedded_backend import EmbeddedBackend
from halospec_tui.backends.sse import fold, is_event_stream, split_events
from halospec_tui.core.results import HALOSPEC_COLUMNS
from halospec_tui.session import Session
from tests.conftest import fast_profile


def _chunk(content: str = "", reasoning: str = "", **extra: object) -> bytes:
    delta = {k: v for k, v in (("content", content), ("reasoning_content", reasoning)) if v}
    ev = {"choices": [{"index": 0, "delta": delta, "finish_reason": None}], **extra}
    return b"data: " + json.dumps(ev).encode() + b"\n\n"


def test_events_are_framed_and_stamped_by_the_read_that_completed_them() -> None:
    first = b'data: {"a": 1}\r\n\r\n'
    body = first + b': a comment\n\nevent: x\ndata: {"b":\ndata: 2}\n\ndata: [DONE]\n\n'
    marks = ((1.5, len(first) - 1), (2.0, len(first) + 3), (7.0, len(body)))
    events = split_events(body, marks)
    # the first event's blank line completed in the second read; the rest in the third
    assert events == [(2.0, b'{"a": 1}'), (7.0, b'{"b":\n2}'), (7.0, b"[DONE]")]
    assert is_event_stream("text/event-stream; charset=utf-8", b"")
    assert is_event_stream("", b"\n data: {}") and not is_event_stream("application/json", b"{}")


def test_fold_gives_text_counters_ttft_and_gaps() -> None:
    events = [
        (3.0, _chunk(reasoning="think ")[6:-2]),
        (3.0, _chunk("Hel")[6:-2]),
        (9.0, _chunk("lo")[6:-2]),
        (
            12.0,
            json.dumps(
                {
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                    "usage": {"completion_tokens": 3},
                    "timings": {"draft_n": 2, "draft_n_accepted": 1},
                }
            ).encode(),
        ),
        (12.5, b"[DONE]"),
        (13.0, b"ignored after DONE"),
    ]
    s = fold(events)
    assert not s.error and s.events == 4
    msg = s.body["choices"][0]["message"]
    assert msg == {"role": "assistant", "content": "Hello", "reasoning_content": "think "}
    assert s.body["usage"] == {"completion_tokens": 3} and s.body["timings"]["draft_n"] == 2
    assert s.ttft_ms == 3.0 and s.gaps_ms == [0.0, 6.0]


def test_fold_reports_what_is_wrong() -> None:
    assert fold([(1.0, b"{not json")]).error == "malformed JSON in a streamed event"
    assert fold([(1.0, b"[DONE]")]).error == "streamed reply has no events"
    assert fold([(1.0, b'{"error": "overloaded"}')]).error == "server error: overloaded"


def test_embedded_engine_streams_each_verify_step_at_once() -> None:
    """The embedded engine's stream: the same text and counters as its non-streamed reply,
    a first token before the end, and speculation visible as ITL spread. With k = 4 a
    verify step emits ~3 tokens at once (gaps of 0 between them, so ITL p50 ~ 0) and the
    steps are >= 5 ms apart (its verify wait: ITL p95 >= 5 ms); with k = 0 every token is
    its own step (ITL p50 >= 5 ms)."""
    prof = fast_profile()
    prof.request.max_tokens = 48
    plain = dataclasses.replace(prof, request=dataclasses.replace(prof.request, stream=False))
    prompt = Prompt("p", "prose", prof.request.prompt)
    with EmbeddedServer(seed=42, verify_wait_ms=5.0) as srv:
        # two request streams of one engine meet the same acceptance draws request by request
        streamed = EmbeddedBackend(prof, attach_url=srv.url, stream="a")
        whole = EmbeddedBackend(plain, attach_url=srv.url, stream="b")
        try:
            spec = streamed.complete(prompt, 4)
            ref = whole.complete(prompt, 4)
            no_spec = streamed.complete(prompt, 0)
        finally:
            streamed.close()
            whole.close()
    assert spec.success and ref.success and no_spec.success, (spec.error, ref.error)
    assert (spec.text, spec.tokens, spec.draft_n, spec.draft_n_accepted) == (
        ref.text,
        ref.tokens,
        ref.draft_n,
        ref.draft_n_accepted,
    )
    assert ref.ttft_ms is None and spec.ttft_ms is not None
    assert 0 < spec.ttft_ms < spec.latency_ms / 2
    assert spec.itl_p50_ms is not None and spec.itl_p95_ms is not None
    assert spec.itl_p50_ms < 1.0 and spec.itl_p95_ms >= 4.5, (spec.itl_p50_ms, spec.itl_p95_ms)
    assert no_spec.itl_p50_ms is not None and no_spec.itl_p50_ms >= 4.5


def test_a_streamed_run_writes_ttft_and_itl(tmp_path: Path) -> None:
    """A run on the embedded engine (streaming by default): every successful row has its
    TTFT and ITL in results.csv (after HaloSpec's eight columns and the older ones), and
    summary.json has the per-mode TTFT / ITL percentiles with how many steps they rest on."""
    prof = fast_profile(modes=["fixed_1", "fixed_4"], steps_fixed=6, warmup=0)
    s = Session.create(prof, tmp_path / "run")
    try:
        s.start_backend()
        s.run()
    finally:
        s.close()
    with (tmp_path / "run" / "results.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        rows = list(reader)
    assert header[:8] == HALOSPEC_COLUMNS
    assert header[-3:] == ["ttft_ms", "itl_p50_ms", "itl_p95_ms"]
    assert len(rows) == 12 and all(r["success"] == "1" for r in rows)
    for r in rows:
        assert 0 < float(r["ttft_ms"]) < float(r["latency_ms"])
        assert float(r["itl_p50_ms"]) <= float(r["itl_p95_ms"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    for m in summary["modes"]:
        assert m["streamed_steps"] == 6
        assert 0 < m["ttft_p50_ms"] <= m["ttft_p95_ms"]
        assert m["itl_p50_ms"] is not None and m["itl_p95_ms"] >= m["itl_p50_ms"]
        lo, hi = m["ttft_p50_ci95_ms"]
        assert lo <= m["ttft_p50_ms"] <= hi
    jsonl = [json.loads(x) for x in (tmp_path / "run" / "responses.jsonl").read_text().splitlines()]
    assert all(rec["stream"]["ttft_ms"] > 0 for rec in jsonl)


def test_an_event_holding_two_json_values_is_malformed_not_misread() -> None:
    """The events are parsed in one go; one that holds two values must not shift the rest."""
    events = [(1.0, b'{"choices": []}, {"usage": {"completion_tokens": 99}}'), (2.0, b"{}")]
    assert fold(events).error == "malformed JSON in a streamed event"


def test_the_printed_summary_gives_the_split_and_says_which_steps_met_load() -> None:
    from halospec_tui.headless import format_summary

    mode = {
        "mode": "adaptive",
        "streamed_steps": 40,
        "ttft_p50_ms": 3.6,
        "ttft_p50_ci95_ms": [3.4, 3.7],
        "ttft_p95_ms": 8.2,
        "itl_p50_ms": 1.64,
        "itl_p50_ci95_ms": None,
        "itl_p95_ms": 6.5,
        "phases": {"steady": {"streamed_steps": 28}, "load": {"streamed_steps": 12}},
    }
    fixed = {**mode, "mode": "fixed_4", "streamed_steps": 5, "ttft_p50_ci95_ms": None}
    fixed["phases"] = {"steady": {"streamed_steps": 5}}
    text = format_summary({"modes": [fixed, mode]})
    assert "   fixed_4: ttft 3.6 / 8.2, itl 1.64 / 6.50 (5 steps)" in text
    assert (
        "   adaptive: ttft 3.6 [3.4, 3.7] / 8.2, itl 1.64 / 6.50 (40 steps, 12 under CPU load)"
        in text
    )
