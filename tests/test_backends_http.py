"""Backends over real HTTP on loopback, without a real Lemonade or vLLM: the embedded engine
answers like Lemonade (reload channel) and like a current llama-server (ignores per-request
draft keys); ScriptedServer plays a Lemonade that ignores reloads and a vLLM with /metrics."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from halospec_tui import profile as P
from halospec_tui.backends.discover import discover, write_profile
from halospec_tui.backends.embedded import EmbeddedServer
from halospec_tui.backends.factory import make_backend
from halospec_tui.backends.metrics import delta, parse_spec_metrics
from halospec_tui.core.events import Notice, RunStarted, StepResult, StepRow
from halospec_tui.core.verdict import cross_check, mode_verdict
from halospec_tui.session import Session
from tests.conftest import fast_profile
from tests.helpers import Recorder, ScriptedServer, ok_reply

DATA = Path(__file__).parent / "data"


def sweep(profile: P.Profile, out: Path, timeout: float = 60.0) -> tuple[Session, Recorder]:
    s = Session.create(profile, out)
    rec = Recorder()
    s.bus.subscribe(rec, inline=True)
    try:
        s.start_backend()
        t = threading.Thread(target=s.run, daemon=True)
        t.start()
        t.join(timeout)
        assert not t.is_alive(), "the sweep did not finish"
    finally:
        s.close()
    return s, rec


def verdicts(s: Session) -> dict[str, str]:
    assert s.runner.summary is not None
    return {m["mode"]: m["draft_control"]["verdict"] for m in s.runner.summary["modes"]}


def attached(kind: str, url: str, modes: list[str], **backend: Any) -> P.Profile:
    p = fast_profile(modes=modes, warmup=0, steps_fixed=3, steps_adaptive=4)
    p.backend.kind = kind
    p.backend.url = url
    for k, v in backend.items():
        setattr(p.backend, k, v)
    return p


@pytest.fixture(scope="module")
def lemonade_like() -> Any:
    """The embedded engine as a Lemonade that runs a current llama-server: per-request keys
    are ignored, only a reload (POST /api/v1/load) changes the draft length."""
    with EmbeddedServer(seed=7, default_n_max=3, ignore_request_n_max=True) as srv:
        yield srv


# --- reload channel ---------------------------------------------------------------------------


def test_reload_channel_applies_k_and_proves_it(
    tmp_path: Path, lemonade_like: EmbeddedServer
) -> None:
    p = attached("lemonade", lemonade_like.url, ["fixed_1", "fixed_5", "adaptive"])
    p.request.model = "halospec-embedded"
    # thresholds that force the latency controller down from 4 at once: k changes mid-mode
    lat = p.controller.latency
    lat.default_low_ms, lat.default_high_ms, lat.step_down = 0.0, 0.001, 2
    s, rec = sweep(p, tmp_path / "run")
    assert rec.of(RunStarted)[0].draft_channel == "reload"
    assert verdicts(s) == {"fixed_1": "applied", "fixed_5": "applied", "adaptive": "applied"}
    modes = {m["mode"]: m for m in s.runner.summary["modes"]}  # type: ignore[index]
    ev = modes["fixed_5"]["draft_control"]["evidence"]
    assert ev["channel"]["confirmed"] is True and ev["channel"]["reloads"] == 1
    assert "--spec-draft-n-max 5" in ev["channel"]["last_reload"]["launch_command"]
    assert 4.0 <= ev["observed_k_median"] <= 5.0
    rows = [e.row for e in rec.of(StepResult)]
    ad = [r for r in rows if r.mode == "adaptive"]
    assert len({r.draft_length for r in ad}) > 1  # the controller changed k ...
    assert all(r.observed_k <= r.draft_length + 1e-9 for r in ad)  # ... and each reload took
    assert modes["adaptive"]["draft_control"]["evidence"]["channel"]["reloads"] >= 2
    text = rec.notices()
    assert "every change of k reloads the model" in text  # the loud warning about reload cost
    assert "confirmed by /api/v1/health" in text
    health = httpx.get(lemonade_like.url + "/api/v1/health").json()
    assert health["embedded"]["loads"] >= 4


def test_reload_that_the_server_does_not_confirm_is_not_applied(tmp_path: Path) -> None:
    """A Lemonade that answers the load but keeps its old arguments (k=3) is caught."""
    srv: ScriptedServer

    def script(i: int) -> Any:
        if "llamacpp_args" in srv.bodies[i]:
            return {"status": "success", "message": "Loaded model"}
        return ok_reply(tokens=16, draft_n=12, accepted=12)  # 3 drafted per verify step

    def get(path: str) -> Any:
        if path == "/api/v1/health":
            return {
                "status": "ok",
                "model_loaded": "m",
                "all_models_loaded": [
                    {
                        "model_name": "m",
                        "recipe_options": {"llamacpp_args": "--spec-draft-n-max 3"},
                        "launch_command": "llama-server -m m.gguf --spec-type draft-simple --spec-draft-n-max 3",
                    }
                ],
            }
        return None

    with ScriptedServer(script, get=get) as srv:
        p = attached("lemonade", srv.url, ["fixed_2", "fixed_6"])
        p.request.model = "m"
        s, rec = sweep(p, tmp_path / "run")
    assert verdicts(s) == {"fixed_2": "not_applied", "fixed_6": "not_applied"}
    ev = s.runner.summary["modes"][1]["draft_control"]["evidence"]  # type: ignore[index]
    assert ev["channel"]["confirmed"] is False
    assert "launch_command has --spec-draft-n-max 3" in ev["note"]
    assert "reload NOT confirmed" in rec.notices()
    loads = [b for b in srv.bodies if "llamacpp_args" in b]
    assert {
        "model_name": "m",
        "llamacpp_args": "--spec-type draft-simple --spec-draft-n-max 2",
    } in loads
    assert s.runner.summary["winner"] is None  # type: ignore[index]


# --- request channel ignored / none channel -----------------------------------------------------


def test_request_keys_ignored_like_current_llama_server(
    tmp_path: Path, lemonade_like: EmbeddedServer
) -> None:
    """Attached llama-server whose build ignores "speculative.n_max": caught in the first
    rounds, while most of the run is still to come."""
    p = attached("llamacpp", lemonade_like.url, ["fixed_1", "fixed_4", "fixed_6"])
    p.run.steps_fixed = 8
    p.request.model = "halospec-embedded"
    httpx.post(
        lemonade_like.url + "/api/v1/load",
        json={"model_name": "halospec-embedded", "llamacpp_args": "--spec-draft-n-max 3"},
    )
    s, rec = sweep(p, tmp_path / "run")
    assert rec.of(RunStarted)[0].draft_channel == "request"
    assert set(verdicts(s).values()) == {"not_applied"}
    loud = [n for n in rec.of(Notice) if n.text.startswith("DRAFT LENGTH NOT APPLIED")]
    assert len(loud) == 1 and "will not be ranked" in loud[0].text
    said = rec.events.index(loud[0])  # after round 3 of 8: most steps still to run
    later = [e for e in rec.events[said:] if isinstance(e, StepResult)]
    assert len(later) == 3 * 5
    assert s.runner.summary["winner"] is None  # type: ignore[index]


def test_none_channel_runs_and_says_so(tmp_path: Path) -> None:
    with EmbeddedServer(seed=3, default_n_max=3) as srv:
        p = attached("llamacpp", srv.url, ["fixed_3"], draft_channel="none")
        s, rec = sweep(p, tmp_path / "one")
        p2 = attached("llamacpp", srv.url, ["fixed_1", "fixed_3"], draft_channel="none")
        s2, rec2 = sweep(p2, tmp_path / "two")
    # the server's own k happens to be the mode's: applied, and the note says who set it
    assert verdicts(s) == {"fixed_3": "applied"}
    note = s.runner.summary["modes"][0]["draft_control"]["evidence"]["note"]  # type: ignore[index]
    assert "fixed by the server" in note
    assert "draft channel none" in rec.notices()
    assert "speculative.n_max" not in str(s.runner.summary)  # type: ignore[index]
    # two k on a server that cannot change: neither is ranked
    assert verdicts(s2) == {"fixed_1": "not_applied", "fixed_3": "not_applied"}
    assert s2.runner.summary["winner"] is None  # type: ignore[index]


# --- vLLM ---------------------------------------------------------------------------------------


def _rows(k: int, n: int = 10, mode: str | None = None) -> list[StepRow]:
    return [
        StepRow(
            global_step=i,
            step=i,
            mode=mode or f"fixed_{k}",
            phase="steady",
            draft_length=k,
            success=1,
            latency_ms=100.0,
            tokens=64,
        )
        for i in range(1, n + 1)
    ]


def test_vllm_metrics_recorded_text() -> None:
    before = parse_spec_metrics((DATA / "vllm_metrics_before.txt").read_text())
    after = parse_spec_metrics((DATA / "vllm_metrics_after.txt").read_text())
    assert before == {
        "drafts": 612.0,
        "draft_tokens": 1836.0,
        "accepted_tokens": 1290.0,
        "tokens_predicted": 2560.0,
    }
    d = delta(before, after)
    assert d == {
        "drafts": 140.0,
        "draft_tokens": 420.0,
        "accepted_tokens": 301.0,
        "tokens_predicted": 640.0,
    }
    # no per-reply counters: the verdict comes from the deltas (3 draft tokens per draft)
    v3 = mode_verdict(_rows(3), "none", d)
    assert v3["verdict"] == "applied" and v3["evidence"]["observed_k_metrics"] == 3.0
    v5 = mode_verdict(_rows(5), "none", d)
    assert (
        v5["verdict"] == "not_applied" and "3.00 draft tokens per draft" in v5["evidence"]["note"]
    )
    adaptive = _rows(4, 5, "adaptive") + _rows(2, 5, "adaptive")
    assert mode_verdict(adaptive, "none", d)["verdict"] == "not_applied"
    modes = [{"mode": "fixed_3", "draft_control": v3}, {"mode": "fixed_5", "draft_control": v5}]
    assert cross_check(modes) == ["fixed_3"]  # same drafting for k=3 and k=5: neither ranked
    off = {"drafts": 0.0, "draft_tokens": 0.0, "accepted_tokens": 0.0, "tokens_predicted": 640.0}
    assert mode_verdict(_rows(3), "none", off)["verdict"] == "not_applied"
    assert mode_verdict(_rows(3), "none", None)["verdict"] == "unknown"


def test_vllm_backend_sweep_over_http(tmp_path: Path) -> None:
    served = "Qwen/Qwen3-0.6B"

    def metrics_page() -> str:
        n = srv.count  # every request drafts 21 times, 3 tokens each
        lab = f'{{engine="0",model_name="{served}"}}'
        return (
            f"# TYPE vllm:spec_decode_num_drafts_total counter\n"
            f"vllm:spec_decode_num_drafts_total{lab} {100 + 21 * n}.0\n"
            f"vllm:spec_decode_num_draft_tokens_total{lab} {300 + 63 * n}.0\n"
            f"vllm:spec_decode_num_accepted_tokens_total{lab} {200 + 40 * n}.0\n"
            f"vllm:generation_tokens_total{lab} {640 + 64 * n}.0\n"
        )

    def get(path: str) -> Any:
        if path == "/metrics":
            return metrics_page()
        if path == "/v1/models":
            return {"object": "list", "data": [{"id": served, "owned_by": "vllm"}]}
        return None

    reply = {"choices": [{"message": {"content": "ok"}}], "usage": {"completion_tokens": 64}}
    with ScriptedServer(lambda i: reply, get=get) as srv:
        p = attached("vllm", srv.url, ["fixed_3"])
        s, rec = sweep(p, tmp_path / "run")
    assert rec.of(RunStarted)[0].draft_channel == "none"
    assert verdicts(s) == {"fixed_3": "applied"}
    ev = s.runner.summary["modes"][0]["draft_control"]["evidence"]  # type: ignore[index]
    assert ev["metrics_delta"]["drafts"] == 63.0 and ev["observed_k_metrics"] == 3.0
    assert all(b["model"] == served and "speculative.n_max" not in b for b in srv.bodies)
    assert f"using {served!r}" in rec.notices()


# --- discovery ----------------------------------------------------------------------------------


def _llama_server_get(path: str) -> Any:
    if path == "/props":
        return {
            "default_generation_settings": {"n_ctx": 4096, "params": {"speculative.types": "none"}},
            "build_info": "b7000",
        }
    if path == "/v1/models":
        return {"object": "list", "data": [{"id": "gemma.gguf", "owned_by": "llamacpp"}]}
    if path == "/metrics":
        return "llamacpp:spec_decode_num_draft_tokens_total 0\nllamacpp:n_decode_total 0\n"
    if path in ("/api/v1/health", "/api/v0/models", "/version"):
        return 404
    return None


def test_discovery_finds_servers_and_writes_a_profile_that_runs(
    tmp_path: Path, lemonade_like: EmbeddedServer
) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    with (
        ScriptedServer(lambda i: ok_reply(), get=_llama_server_get) as llama,
        ScriptedServer(lambda i: ok_reply()) as plain,
    ):
        t0 = time.monotonic()
        # a generous timeout: the probed servers share 2 busy cores with the test
        found = discover([lemonade_like.url, llama.url, dead, plain.url], timeout=3.0)
        took = time.monotonic() - t0
    assert took < 6.0  # all probes run at once: about one timeout at most
    assert [f.url for f in found] == [lemonade_like.url, llama.url, plain.url]
    lem, ll, other = found
    assert (lem.kind, lem.channel, lem.model) == ("lemonade", "reload", "halospec-embedded")
    assert "per reply" in lem.draft_counters
    assert (ll.kind, ll.channel, ll.models) == ("llamacpp", "request", ["gemma.gguf"])
    assert "and /metrics" in ll.draft_counters
    assert any("ignores per-request draft keys" in n for n in ll.notes)
    assert other.kind == "openai" and other.label.startswith("HTTP server")

    path = write_profile(lem, tmp_path / "found.toml")
    prof = P.load(path)
    assert (prof.backend.kind, prof.backend.url, prof.backend.draft_channel) == (
        "lemonade",
        lemonade_like.url,
        "reload",
    )
    assert path.read_text().startswith("# HaloSpec embedded engine (Lemonade API) at")
    # the written profile works as it is (a short sweep of it)
    prof.run.modes, prof.run.warmup, prof.run.steps_fixed, prof.run.cooldown_s = (
        ["fixed_2"],
        0,
        2,
        0.0,
    )
    prof.request.max_tokens = 16
    s, _ = sweep(prof, tmp_path / "run")
    assert verdicts(s) == {"fixed_2": "applied"}


def test_discover_command_line(
    tmp_path: Path, lemonade_like: EmbeddedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess
    import sys

    from halospec_tui.backends.discover import run_cli

    out = tmp_path / "picked.toml"
    dead = f"http://127.0.0.1:{_free_port()}"
    # the flag, end to end (a subprocess: cli.main stops every child of its process at exit)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "halospec_tui",
            "--discover",
            "--probe-timeout",
            "3",
            "--address",
            dead,
            "--address",
            lemonade_like.url,
            "--pick",
            "1",
            "--write",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert "1. HaloSpec embedded engine (Lemonade API)" in proc.stdout
    assert f"wrote {out}" in proc.stdout
    assert P.load(out).backend.kind == "lemonade"
    assert run_cli(addresses=[lemonade_like.url], pick=5, timeout=3.0) == 2
    assert run_cli(addresses=[lemonade_like.url], write=str(out), timeout=3.0) == 2  # which one?
    assert run_cli(addresses=[dead], timeout=3.0) == 3
    assert "no server answered" in capsys.readouterr().out


def test_factory_builds_every_kind() -> None:
    for kind, channel in (
        ("openai", "request"),
        ("lemonade", "reload"),
        ("llamacpp", "request"),
        ("llamacpp-managed", "pool"),
        ("vllm", "none"),
        ("lmstudio", "none"),
    ):
        p = P.Profile()
        p.backend.kind = kind
        b = make_backend(p)
        assert (b.kind, b.draft_channel) == (kind, channel)
    p = P.Profile()
    p.backend.kind, p.backend.draft_channel = "vllm", "reload"
    with pytest.raises(P.ProfileError, match="vllm supports none, request"):
        make_backend(p)


def _free_port() -> int:
    from halospec_tui.backends.llamacpp_managed import free_port

    return free_port()
