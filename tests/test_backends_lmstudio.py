"""LM Studio backend over real HTTP on loopback.

LM Studio itself cannot run here (a desktop application), so the embedded engine answers in
the shape of LM Studio's REST API (`--lmstudio-rest`: `/api/v0/chat/completions` replies carry
`stats` in seconds and no `timings`), and ScriptedServer plays LM Studio for discovery.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from halospec_tui import profile as P
from halospec_tui.backends.discover import discover
from halospec_tui.backends.embedded import EmbeddedServer
from halospec_tui.backends.factory import make_backend
from halospec_tui.backends.lmstudio import LMStudioBackend, stats_as_timings
from halospec_tui.core.events import Notice, RunStarted, StepResult
from halospec_tui.discovered_profile import write_profile
from halospec_tui.prompts import Prompt
from tests.helpers import ScriptedServer, ok_reply
from tests.test_backends_http import attached, sweep, verdicts

# A reply of LM Studio's REST API with a draft model (field names from its docs)
LMS_REPLY: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "qwen2.5-7b-instruct",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
    "usage": {"prompt_tokens": 24, "completion_tokens": 53, "total_tokens": 77},
    "stats": {
        "tokens_per_second": 51.43,
        "time_to_first_token": 0.111,
        "generation_time": 0.954,
        "stop_reason": "eosFound",
        "draft_model": "qwen2.5-0.5b-instruct",
        "total_draft_tokens_count": 40,
        "accepted_draft_tokens_count": 30,
        "rejected_draft_tokens_count": 8,
        "ignored_draft_tokens_count": 2,
    },
}


def lmstudio_server(**kw: Any) -> EmbeddedServer:
    return EmbeddedServer(seed=11, default_n_max=3, extra_args=["--lmstudio-rest"], **kw)


def test_stats_read_as_timings() -> None:
    t = stats_as_timings(LMS_REPLY)
    assert t == {
        "prompt_ms": pytest.approx(111.0),
        "predicted_ms": pytest.approx(954.0),
        "draft_n": 40,
        "draft_n_accepted": 30,
        "prompt_n": 24,
        "predicted_n": 53,
        "predicted_per_second": 51.43,
    }
    b = LMStudioBackend(P.Profile())
    r = b.reply_from(LMS_REPLY, 1100.0, 1)
    assert r.success and r.tokens == 53 and (r.draft_n, r.draft_n_accepted) == (40, 30)
    assert r.server_ms == pytest.approx(1065.0)
    assert r.raw is LMS_REPLY  # responses.jsonl keeps what the server sent
    # no draft model: no counters, still a good step
    plain = {**LMS_REPLY, "stats": {"tokens_per_second": 50.0, "generation_time": 1.0}}
    r2 = b.reply_from(plain, 1000.0, 1)
    assert r2.success and r2.draft_n is None


def test_request_channel_applied_and_proven_from_stats(tmp_path: Path) -> None:
    with lmstudio_server() as srv:
        p = attached("lmstudio", srv.url, ["fixed_1", "fixed_5"], draft_channel="request")
        p.backend.draft_model = "tiny-draft"
        s, rec = sweep(p, tmp_path / "run")
        # what went over the wire: LM Studio's REST path, the draft model, no timings back
        b = LMStudioBackend(p, url=srv.url, draft_channel="request")
        try:
            one = b.complete(Prompt("p", "prose", "hello there"), 2)
        finally:
            b.close()
    assert "timings" not in one.raw and one.raw["stats"]["draft_model"] == "tiny-draft"
    assert rec.of(RunStarted)[0].draft_channel == "request"
    assert verdicts(s) == {"fixed_1": "applied", "fixed_5": "applied"}
    rows = [e.row for e in rec.of(StepResult)]
    assert all(r.draft_n is not None and r.server_ms for r in rows)
    k1 = [r.observed_k for r in rows if r.mode == "fixed_1"]
    k5 = [r.observed_k for r in rows if r.mode == "fixed_5"]
    assert max(k1) <= 1.0 and min(k5) > 3.0


def test_a_lmstudio_that_ignores_the_key_is_called_out(tmp_path: Path) -> None:
    with lmstudio_server(ignore_request_n_max=True) as srv:
        p = attached("lmstudio", srv.url, ["fixed_1", "fixed_6"], draft_channel="request")
        s, rec = sweep(p, tmp_path / "run")
    assert set(verdicts(s).values()) == {"not_applied"}
    assert any(n.text.startswith("DRAFT LENGTH NOT APPLIED") for n in rec.of(Notice))
    assert s.runner.summary["winner"] is None  # type: ignore[index]


def test_default_channel_is_none_and_sends_no_key(tmp_path: Path) -> None:
    with lmstudio_server() as srv:
        p = attached("lmstudio", srv.url, ["fixed_3"])
        assert make_backend(p).draft_channel == "none"
        s, rec = sweep(p, tmp_path / "run")
    assert rec.of(RunStarted)[0].draft_channel == "none"
    assert "draft channel none" in rec.notices()
    assert verdicts(s) == {"fixed_3": "applied"}  # the server's own k is 3: says who set it
    assert "speculative.n_max" not in str(s.runner.summary)


def _lmstudio_get(path: str) -> Any:
    if path == "/api/v0/models":
        return {
            "object": "list",
            "data": [{"id": "qwen2.5-7b-instruct", "type": "llm", "state": "loaded"}],
        }
    if path == "/v1/models":
        return {
            "object": "list",
            "data": [{"id": "qwen2.5-7b-instruct", "owned_by": "organization_owner"}],
        }
    return 404


def test_discovery_names_lmstudio_and_writes_its_profile(tmp_path: Path) -> None:
    with ScriptedServer(lambda i: ok_reply(), get=_lmstudio_get) as lms:
        found = discover([lms.url], timeout=3.0)
    assert len(found) == 1
    f = found[0]
    assert (f.kind, f.label, f.channel) == ("lmstudio", "LM Studio", "none")
    assert "stats" in f.draft_counters
    prof = P.load(write_profile(f, tmp_path / "lms.toml"))
    assert (prof.backend.kind, prof.backend.url) == ("lmstudio", lms.url)
