"""Secrets never leave the harness: what redact.scrub masks, and what it leaves alone."""

from __future__ import annotations

from halospec_tui import redact


def test_registered_secret_is_masked_wherever_it_appears() -> None:
    redact.add_secret("hunter2-longer-value")
    text = "key hunter2-longer-value rejected; got hunter2-longer-value"
    assert redact.scrub(text) == "key *** rejected; got ***"


def test_token_shaped_values_are_masked() -> None:
    cases = {
        "invalid api key: Bearer abcDEF123456.xyz": "invalid api key: Bearer ***",
        "authorization: bearer 0123456789abcdef": "authorization: bearer ***",
        "your key sk-proj-AbC123dEf456 is invalid": "your key sk-*** is invalid",
        '{"api_key": "abcd1234efgh"}': '{"api_key": "***"}',
        "x-api-key: Zz9Yy8Xx7": "x-api-key: ***",
        "access_token=aaaa.bbbb.cccc&x=1": "access_token=***&x=1",
    }
    for raw, masked in cases.items():
        assert redact.scrub(raw) == masked, raw


def test_ordinary_text_is_left_alone() -> None:
    for text in (
        "Speculative decoding drafts k tokens; the target verifies them.",
        "bearer bonds",  # too short to be a token
        "def f(api): return api.key",
        "tokens 64, draft_n 50, accepted 48",
        "",
    ):
        assert redact.scrub(text) == text


def test_scrubbing_twice_changes_nothing_more() -> None:
    once = redact.scrub("Bearer sk-abcdef123456 and api_key=zzzz9999")
    assert redact.scrub(once) == once and "zzzz" not in once and "abcdef" not in once


def test_short_values_are_not_registered_as_secrets() -> None:
    redact.add_secret("ab")  # would mask every "ab" in every text
    assert redact.scrub("about abstract") == "about abstract"


def test_json_structures_are_scrubbed_throughout() -> None:
    obj = {"error": {"message": "Bearer abcdefgh12345"}, "list": ["sk-abcdefgh1"], "n": 3}
    assert redact.scrub_obj(obj) == {
        "error": {"message": "Bearer ***"},
        "list": ["sk-***"],
        "n": 3,
    }
