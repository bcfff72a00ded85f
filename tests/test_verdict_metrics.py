"""Draft-length verdicts from server counters, /metrics parsing, reply parsing."""

from __future__ import annotations

from halospec_tui.backends.metrics import delta, parse_spec_metrics
from halospec_tui.backends.openai_compat import parse_reply, reply_text
from halospec_tui.core.events import StepRow
from halospec_tui.core.verdict import cross_check, mode_verdict


def _rows(k: int, observed: float | None, n: int = 5) -> list[StepRow]:
    return [
        StepRow(
            global_step=i,
            step=i,
            mode=f"fixed_{k}",
            phase="steady",
            draft_length=k,
            success=1,
            latency_ms=100.0,
            tokens=64,
            observed_k=observed,
            draft_n=None if observed is None else 40,
            draft_n_accepted=20,
        )
        for i in range(1, n + 1)
    ]


def test_counters_that_follow_k_are_applied() -> None:
    v = mode_verdict(_rows(4, 3.7), "request")
    assert v["verdict"] == "applied" and v["evidence"]["observed_k_median"] == 3.7


def test_counters_that_do_not_follow_k_are_not_applied() -> None:
    v = mode_verdict(_rows(8, 3.0), "request")
    assert v["verdict"] == "not_applied" and "does not follow" in v["evidence"]["note"]


def test_no_counters_is_unknown() -> None:
    assert mode_verdict(_rows(4, None), "request")["verdict"] == "unknown"


def test_same_observed_k_for_different_requested_k_is_not_applied() -> None:
    """A server stuck at k=3 looks right for fixed_3 alone; next to fixed_2 it is caught."""
    modes = []
    for k in (2, 3):
        modes.append(
            {"mode": f"fixed_{k}", "draft_control": mode_verdict(_rows(k, 2.9), "request")}
        )
    assert modes[1]["draft_control"]["verdict"] == "applied"
    changed = cross_check(modes)
    assert set(changed) == {"fixed_3"}
    assert modes[1]["draft_control"]["verdict"] == "not_applied"


def test_metrics_parsing_llamacpp_vllm_lemonade() -> None:
    text = """# HELP llamacpp:spec_decode_num_draft_tokens_total drafted
# TYPE llamacpp:spec_decode_num_draft_tokens_total counter
llamacpp:spec_decode_num_draft_tokens_total 50
llamacpp:spec_decode_num_accepted_tokens_total 50
llamacpp:spec_decode_num_drafts_total 13
llamacpp:spec_decode_num_accepted_tokens_per_pos_total{position="0"} 13
"""
    assert parse_spec_metrics(text) == {
        "draft_tokens": 50.0,
        "accepted_tokens": 50.0,
        "drafts": 13.0,
    }
    vllm = (
        'vllm:spec_decode_num_drafts_total{engine="0",model_name="m"} 7.0\n'
        'vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="m"} 21.0\n'
        'vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="m"} 15.0\n'
    )
    assert parse_spec_metrics(vllm) == {
        "drafts": 7.0,
        "draft_tokens": 21.0,
        "accepted_tokens": 15.0,
    }
    lem = (
        'lemonade_llamacpp_spec_decode_num_draft_tokens_total{model_name="x",recipe="llamacpp"} 9\n'
    )
    assert parse_spec_metrics(lem) == {"draft_tokens": 9.0}
    assert delta({"drafts": 3.0}, {"drafts": 10.0}) == {"drafts": 7.0}
    assert delta(None, {"drafts": 1.0}) is None


def test_reply_parsing() -> None:
    body = {
        "choices": [{"message": {"content": "<think>x</think> Hello."}}],
        "usage": {"completion_tokens": 12},
        "timings": {
            "prompt_n": 5,
            "prompt_ms": 1.5,
            "predicted_n": 12,
            "predicted_ms": 80.0,
            "draft_n": 10,
            "draft_n_accepted": 6,
        },
    }
    r = parse_reply(body, 90.0, 1)
    assert r.success and r.tokens == 12 and r.text == "Hello."
    assert r.observed_k == 10 / (12 - 6 - 1) and r.acceptance == 0.6 and r.server_ms == 81.5
    missing = parse_reply({"choices": [{"message": {"content": "x"}}]}, 90.0, 1)
    assert not missing.success and "usage" in missing.error
    assert not parse_reply([1, 2], 1.0, 1).success
    assert reply_text({"choices": [{"text": "plain"}]}) == "plain"
    assert reply_text({"choices": [{"message": {"reasoning_content": "r"}}]}) == "r"
