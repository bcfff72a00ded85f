"""Evaluation tables: arithmetic on made-up rows, medians over runs, text output, and one short
end-to-end evaluation on the embedded engine through the CLI (structure only, no thresholds:
those are measured by benchmarks/evaluate_targets.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from halospec_tui import evaluation as E
from halospec_tui import profile as P
from halospec_tui.cli import main
from halospec_tui.core.evaluation import metrics as M
from halospec_tui.core.evaluation import text as T
from halospec_tui.core.events import StepRow
from halospec_tui.headless import format_summary


def row(
    mode: str, step: int, k: int, ms: float, phase: str = "steady", tokens: int = 100
) -> StepRow:
    return StepRow(
        global_step=0,
        step=step,
        mode=mode,
        phase=phase,
        draft_length=k,
        success=1,
        latency_ms=ms,
        tokens=tokens,
    )


def load_profile() -> P.Profile:
    p = P.Profile()
    p.scenario = P.ScenarioSettings(
        kind="load_shift", load_start_step=5, load_steps=4, settle_steps=2
    )
    return p


def phase_of(step: int) -> str:
    return "steady" if step < 5 else ("load" if step < 9 else "recovery")


def made_up_rows() -> list[StepRow]:
    """fixed_1: 100 ms unloaded, 200 ms loaded; fixed_4: 50 ms unloaded, 400 ms loaded;
    the controller plays k 4 unloaded and k 1 loaded except the first loaded step."""
    rows = []
    for step in range(1, 13):
        ph = phase_of(step)
        loaded = ph == "load"
        rows.append(row("fixed_1", step, 1, 200.0 if loaded else 100.0, ph))
        rows.append(row("fixed_4", step, 4, 400.0 if loaded else 50.0, ph))
        k = 1 if loaded and step > 5 else 4
        ms = {1: 200.0, 4: 400.0} if loaded else {1: 100.0, 4: 50.0}
        rows.append(row("adaptive:model", step, k, ms[k], ph))
    return rows


def test_applies_only_with_an_adaptive_and_another_mode() -> None:
    assert not M.applies(["fixed_1", "fixed_2"])
    assert not M.applies(["adaptive"])
    assert M.applies(["fixed_1", "adaptive"])
    assert M.applies(["adaptive:model", "adaptive:bandit"])
    rows = [row("fixed_1", 1, 1, 10.0), row("fixed_2", 1, 2, 10.0)]
    assert M.evaluation_for_run(rows, P.Profile()) is None


def test_per_segment_oracle_and_ratios() -> None:
    ev = M.evaluation_for_run(made_up_rows(), load_profile(), {"adaptive:model": [0.5] * 12})
    assert ev is not None
    segs = {s["name"]: s for s in ev["segments"]}
    assert list(segs) == ["steady", "load", "recovery"]
    assert (segs["load"]["first_step"], segs["load"]["last_step"]) == (5, 8)
    assert segs["load"]["settled_from_step"] == 7
    assert segs["steady"]["oracle"]["mode"] == "fixed_4"
    assert segs["load"]["oracle"]["mode"] == "fixed_1"
    assert segs["load"]["oracle"]["tokens_per_s"] == pytest.approx(500.0)
    m = segs["load"]["modes"]["adaptive:model"]
    assert m["ratio_oracle"] == pytest.approx(1.0)  # settled: k 1 like the oracle
    assert m["tokens_per_s"] == pytest.approx(400 / 1.0)  # whole segment: 400+200*3 ms
    assert m["p95_ms"] == 400.0 and m["p50_ms"] == 200.0
    # best single fixed k over the run: fixed_1, 8 x 100 + 4 x 200 = 1600 ms for 1200 tokens
    # (fixed_4 takes 8 x 50 + 4 x 400 = 2000 ms)
    overall = ev["overall"]
    assert overall["best_fixed"]["mode"] == "fixed_1"
    assert overall["oracle_schedule"]["ks"] == {"steady": 4, "load": 1, "recovery": 4}
    assert overall["oracle_schedule"]["tokens_per_s"] == pytest.approx(1200 / 1.2)
    model = overall["modes"]["adaptive:model"]
    assert model["tokens_per_s"] == pytest.approx(1200 / 1.4)
    assert model["tokens_per_s_with_overhead"] == pytest.approx(1200 / 1.406)
    assert model["ratio_best_fixed"] == pytest.approx((1200 / 1.406) / (1200 / 1.6), rel=1e-3)
    assert model["controller_ms_per_step"] == pytest.approx(0.5)
    assert model["k_changes"] == 2
    assert ev["k_tracks"]["adaptive:model"] == [4, 4, 4, 4, 4, 1, 1, 1, 4, 4, 4, 4]
    json.dumps(ev, allow_nan=False)


def test_slim_rows_give_the_same_table_as_full_rows() -> None:
    """The runner keeps EvalRow records, not StepRows: the table must not change."""
    rows = made_up_rows()
    ctl = {"adaptive:model": [0.5] * 12}
    slim = [M.EvalRow.of(r) for r in rows]
    assert M.evaluation_for_run(slim, load_profile(), ctl) == M.evaluation_for_run(
        rows, load_profile(), ctl
    )


def test_short_segments_are_used_whole() -> None:
    p = load_profile()
    p.scenario.settle_steps = 10
    ev = M.evaluation_for_run(made_up_rows(), p)
    assert ev is not None
    assert all(not s["settled"] for s in ev["segments"])
    load = next(s for s in ev["segments"] if s["name"] == "load")
    assert load["settled_from_step"] == 5


def test_aggregate_takes_medians() -> None:
    rows = made_up_rows()
    evs = []
    for scale in (1.0, 2.0, 4.0):
        scaled = [r.__class__(**{**r.__dict__, "latency_ms": r.latency_ms * scale}) for r in rows]
        evs.append(M.evaluation_for_run(scaled, load_profile()))
    agg = E.aggregate(evs, [1, 2, 3])  # type: ignore[arg-type]
    assert agg["runs"] == 3 and agg["seeds"] == [1, 2, 3]
    one = evs[1]["overall"]["modes"]["adaptive:model"]["tokens_per_s"]  # type: ignore[index]
    assert agg["overall"]["modes"]["adaptive:model"]["tokens_per_s"] == pytest.approx(one, rel=1e-3)
    assert agg["segments"][1]["oracle"]["mode"] == "fixed_1"
    # per-segment numbers are medians over the runs too, not the first run's
    seg = [e["segments"][0]["modes"]["adaptive:model"]["tokens_per_s"] for e in evs]  # type: ignore[index]
    assert agg["segments"][0]["modes"]["adaptive:model"]["tokens_per_s"] == pytest.approx(
        sorted(seg)[1], rel=1e-3
    )
    assert seg[0] != pytest.approx(sorted(seg)[1], rel=1e-3)  # so the first run's would fail
    assert agg["oracle_per_run"][0] == {
        "steady": "fixed_4",
        "load": "fixed_1",
        "recovery": "fixed_4",
    }


def test_text_table_and_plot() -> None:
    ev = M.evaluation_for_run(made_up_rows(), load_profile())
    assert ev is not None
    text = T.format_evaluation(ev)
    for s in ("segment steady", "segment load", "oracle fixed_1", "whole run", "adaptive:model"):
        assert s in text
    plot = T.k_tracking_plot(ev, "adaptive:model", width=60, height=10)
    assert "adaptive:model: k by step" in plot and "x" in plot
    assert "\x1b[" not in plot  # no colour codes in files
    summary = {"modes": [], "winner": None, "evaluation": ev}
    assert "segment load" in format_summary(summary)


def test_evaluation_profile_runs_every_fixed_k_then_the_controllers() -> None:
    p = load_profile()
    p.run.modes = ["fixed_3", "adaptive:model", "adaptive"]
    p.scenario.fixed_k = [2, 1]
    p.run.steps_fixed, p.run.steps_adaptive = 7, 9
    q = E.evaluation_profile(p)
    assert q.run.modes == ["fixed_1", "fixed_2", "adaptive:model", "adaptive"]
    assert q.steps_for("fixed_1") == q.steps_for("adaptive") == 9
    assert not q.load.scheduled
    p.run.modes = ["fixed_1"]
    assert E.evaluation_profile(p).run.modes[-3:] == [
        "adaptive:model",
        "adaptive:bandit",
        "adaptive:heuristic",
    ]
    p.scenario.kind = "none"
    assert E.evaluation_profile(p).scenario.kind == "load_shift"


TINY = """
name = "tiny-eval"
[run]
modes = ["adaptive:model", "adaptive:bandit", "adaptive:heuristic"]
warmup = 0
warmup_interval_s = 0.0
cooldown_s = 0.0
[request]
model = "halospec-embedded"
max_tokens = 16
prompts_file = "builtin:mixed"
timeout_s = 20.0
[load]
cores = 1
[embedded]
threads = 1
[scenario]
kind = "both"
steps = 6
categories = ["code", "prose"]
shift_steps = [5]
load_start_step = 3
load_steps = 2
settle_steps = 1
fixed_k = [1, 3]
"""


@pytest.mark.slow
@pytest.mark.parametrize("interleave", [True, False], ids=["interleaved", "sequential"])
def test_evaluate_command_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], interleave: bool
) -> None:
    prof = tmp_path / "tiny.toml"
    prof.write_text(TINY + f"interleave = {str(interleave).lower()}\n", encoding="utf-8")
    out = tmp_path / "eval"
    # the profile's seed (42), or --seed: other seeds for a robustness check
    seed = [] if interleave else ["--seed", "7"]
    assert main(["evaluate", "--profile", str(prof), "--out", str(out), "--runs", "1", *seed]) == 0
    printed = capsys.readouterr().out
    assert "whole run: best single fixed" in printed and "k by step" in printed
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["runs"] == 1 and ev["seeds"] == ([42] if interleave else [7])
    assert ev["fixed_modes"] == ["fixed_1", "fixed_3"]
    assert ev["adaptive_modes"] == ["adaptive:model", "adaptive:bandit", "adaptive:heuristic"]
    assert [s["name"] for s in ev["segments"]] == ["code/steady", "code/load", "prose/recovery"]
    for seg in ev["segments"]:
        assert seg["oracle"]["mode"] in ("fixed_1", "fixed_3")
        for mode in ev["fixed_modes"] + ev["adaptive_modes"]:
            stats = seg["modes"][mode]
            assert set(stats) >= {
                "tokens_per_s",
                "p50_ms",
                "p95_ms",
                "ratio_oracle",
                "ratio_best_fixed",
            }
            assert stats["steps"] == seg["last_step"] - seg["first_step"] + 1
    for mode in ev["adaptive_modes"]:
        assert len(ev["k_tracks"][mode]) == 6
        assert ev["overall"]["modes"][mode]["ratio_best_fixed"] is not None
        assert ev["overall"]["modes"][mode]["controller_ms_per_step"] is not None
    run = out / "run-1"
    for name in (
        "results.csv",
        "summary.json",
        "evaluation.json",
        "k_tracking.txt",
        "profile.toml",
    ):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["evaluation"]["segments"][0]["name"] == "code/steady"
    # every mode met the same acceptance draws: same k at the same step → same counters
    from halospec_tui.core.results import load_rows

    rows = load_rows(run / "results.csv")
    by = {(r.mode, r.step): r for r in rows}
    same = [
        (r, by[(f"fixed_{r.draft_length}", r.step)])
        for r in rows
        if not r.mode.startswith("fixed_") and (f"fixed_{r.draft_length}", r.step) in by
    ]
    assert all(a.draft_n_accepted == b.draft_n_accepted for a, b in same)


def test_evaluate_command_rejects_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--runs", "0"]) == 2
    capsys.readouterr()
    assert main(["evaluate", "--seed", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--seed" in err and "got -1" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nkind = "load_shift"\n', encoding="utf-8")
    assert main(["evaluate", "--profile", str(bad)]) == 2
    assert "scenario.kind" in capsys.readouterr().err


def test_evaluate_says_in_one_line_when_the_server_never_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real closed port on loopback: exit 3 (the server's code), one line naming the URL,
    no traceback, and no evaluation.json claiming a result."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    prof = tmp_path / "p.toml"
    prof.write_text(
        "[backend]\n"
        f'kind = "openai"\nurl = "http://127.0.0.1:{port}"\nhealth_timeout_s = 0.5\n'
        '[scenario]\nkind = "stationary"\nsteps = 2\nfixed_k = [1]\n',
        encoding="utf-8",
    )
    code = main(["evaluate", "--profile", str(prof), "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err
    assert code == 3, err
    assert f"127.0.0.1:{port}" in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "ev" / "evaluation.json").exists()
