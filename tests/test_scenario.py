"""Scenarios: profile validation, content segments, load by step, prompts, and the runner hooks
(with a scripted in-process backend and a fake load injector, so no timing is involved)."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest

from halospec_tui import profile as P
from halospec_tui.backends.base import Backend, Reply
from halospec_tui.core import scenario as S
from halospec_tui.core.events import EventBus, LoadChanged, StepResult
from halospec_tui.core.runner import Runner
from halospec_tui.core.scenario import PromptSchedule
from halospec_tui.profile import load_prompts
from halospec_tui.prompts import Prompt

# --- profile validation ------------------------------------------------------------------


def scen(**kw: Any) -> dict[str, Any]:
    return {"scenario": kw}


@pytest.mark.parametrize(
    ("data", "msg"),
    [
        (scen(categories=["code", "poetry"]), "scenario.categories[1]: expected one of"),
        (scen(categories=["code", "prose"]), "scenario.shift_steps: expected 1 steps"),
        (scen(shift_steps=[4]), "expected no steps without scenario.categories"),
        (
            scen(categories=["code", "prose", "math"], shift_steps=[10, 10]),
            "scenario.shift_steps[1]: expected increasing",
        ),
        (scen(categories=["code", "prose"], shift_steps=[1]), "scenario.shift_steps[0]"),
        (scen(load_start_step=5), "load_start_step and load_steps both set"),
        (scen(load_steps=5), "load_start_step and load_steps both set"),
        (scen(fixed_k=[0, 2]), "scenario.fixed_k[0]: expected K from 1 to 64"),
        (scen(fixed_k=[2, 2]), "scenario.fixed_k: expected each K once"),
        (scen(kind="load_shift"), "'load_shift' expects at most one category and load_steps > 0"),
        (
            scen(kind="stationary", load_start_step=2, load_steps=3),
            "'stationary' expects at most one category and no load",
        ),
        (scen(kind="content_shift", categories=["code"]), "two or more categories and no load"),
        (scen(kind="chaos"), "scenario.kind: expected one of"),
        ({"controller": {"model": {"k_min": 9, "k_max": 4}}}, "controller.model.k_min"),
        ({"controller": {"bandit": {"discount": 1.5}}}, "controller.bandit.discount"),
        ({"controller": {"heuristic": {"granularity": "token"}}}, "granularity: expected one of"),
    ],
)
def test_bad_scenarios_are_rejected(data: dict[str, Any], msg: str) -> None:
    with pytest.raises(P.ProfileError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        P.from_dict(data, source="x.toml")


def test_scenario_round_trips_through_toml(tmp_path: Path) -> None:
    p = P.from_dict(
        {
            "run": {
                "modes": ["fixed_2", "adaptive:model", "adaptive:bandit", "adaptive:heuristic"]
            },
            "scenario": {
                "kind": "both",
                "steps": 30,
                "categories": ["code", "prose"],
                "shift_steps": [16],
                "load_start_step": 6,
                "load_steps": 5,
                "fixed_k": [1, 3],
            },
            "controller": {"model": {"discount": 0.8}, "heuristic": {"granularity": "request"}},
        }
    )
    p.save(tmp_path / "p.toml")
    q = P.load(tmp_path / "p.toml")
    assert q.scenario == p.scenario and q.controller == p.controller
    assert q.steps_for("fixed_2") == q.steps_for("adaptive:model") == 30
    assert "scenario.load_steps" in P.settings_reference()


# --- segments and load ---------------------------------------------------------------------


def sc(**kw: Any) -> P.ScenarioSettings:
    s = P.ScenarioSettings(**kw)
    P._validate_scenario(s)
    return s


def test_content_segments_by_step() -> None:
    s = sc(kind="content_shift", categories=["json", "prose", "json"], shift_steps=[11, 21])
    segs = S.content_segments(s)
    assert [(g.category, g.first_step, g.last_step) for g in segs] == [
        ("json", 1, 10),
        ("prose", 11, 20),
        ("json", 21, None),
    ]
    assert S.content_segment_at(s, None).category == "json"  # warmup
    assert [S.content_segment_at(s, n).index for n in (1, 10, 11, 20, 21, 99)] == [0, 0, 1, 1, 2, 2]
    keys = [S.segment_key(s, n, "steady") for n in (1, 11, 21)]
    assert keys == [(0, ""), (1, ""), (2, "")]
    assert list(S.unique_labels(s, keys).values()) == ["json", "prose", "json#2"]


def test_load_actions_by_step() -> None:
    s = sc(kind="load_shift", load_start_step=5, load_steps=3)
    actions = {n: S.load_action(s, n) for n in range(1, 12)}
    assert actions[5] == "start" and actions[8] == "stop"
    assert [n for n, a in actions.items() if a] == [5, 8]
    assert list(S.loaded_steps(s)) == [5, 6, 7]
    assert S.load_action(sc(), 5) is None  # no scenario, no load
    labels = S.unique_labels(s, [S.segment_key(s, 1, ph) for ph in ("steady", "load", "recovery")])
    assert list(labels.values()) == ["steady", "load", "recovery"]


def test_both_segments_and_description() -> None:
    s = sc(
        kind="both", categories=["code", "prose"], shift_steps=[9], load_start_step=4, load_steps=3
    )
    assert S.segment_label(s, S.segment_key(s, 5, "load")) == "code/load"
    assert S.segment_label(s, S.segment_key(s, 12, "recovery")) == "prose/recovery"
    d = S.describe(s)
    assert d["content"][1] == {"category": "prose", "first_step": 9, "last_step": None}
    assert d["load"] == {"first_step": 4, "last_step": 6}
    assert S.segment_label(sc(kind="stationary"), (0, "")) == "all"


# --- prompts -------------------------------------------------------------------------------


def test_scenario_prompts_follow_the_category_and_are_unique() -> None:
    p = P.Profile()
    p.request.prompts_file = "builtin:mixed"
    p.scenario = sc(kind="content_shift", categories=["code", "math"], shift_steps=[4])
    sched = S.scenario_prompts(PromptSchedule(load_prompts(p)), p)
    assert isinstance(sched, S.ScenarioPromptSchedule)
    warm = sched.prompt_for("fixed_1", 0, None)
    assert warm.category == "code"
    cats = [sched.prompt_for("fixed_1", 2 + n - 1, n).category for n in range(1, 8)]
    assert cats == ["code"] * 3 + ["math"] * 4
    texts = [sched.prompt_for("m", i, 1).text for i in range(10)]
    assert len(set(texts)) == 10 and texts[3].endswith("(request 4)")
    # the same request index gives the same prompt in every mode
    assert sched.prompt_for("fixed_1", 5, 5) == sched.prompt_for("adaptive:model", 5, 5)


def test_missing_categories_come_from_the_builtin_suites() -> None:
    p = P.Profile()  # the single HaloSpec prompt, category prose
    p.scenario = sc(kind="content_shift", categories=["json", "prose"], shift_steps=[3])
    sched = S.scenario_prompts(PromptSchedule(load_prompts(p)), p)
    first = sched.prompt_for("x", 0, 1)
    assert first.category == "json" and first.id.startswith("json-")
    assert sched.prompt_for("x", 3, 3).text.startswith(P.HALOSPEC_PROMPT)


def test_a_suite_pattern_joins_the_ngram_suites_for_a_shift_across_them() -> None:
    """builtin:ngram-* is every n-gram suite: a content shift json -> math (the list suite)
    takes each segment's prompts from its own suite."""
    p = P.Profile()
    p.request.prompts_file = "builtin:ngram-*"
    p.scenario = sc(kind="content_shift", categories=["json", "math"], shift_steps=[3])
    prompts = load_prompts(p)
    assert {q.category for q in prompts} == {"code", "json", "math", "prose"}
    sched = S.scenario_prompts(PromptSchedule(prompts), p)
    assert sched.prompt_for("x", 1, 1).id.startswith("json-transform-")
    assert sched.prompt_for("x", 3, 3).id.startswith("list-")


def test_no_scenario_keeps_the_schedule() -> None:
    p = P.Profile()
    base = PromptSchedule(load_prompts(p))
    assert S.scenario_prompts(base, p) is base
    p.scenario = sc(kind="stationary", unique_prompts=False)
    assert S.scenario_prompts(base, p) is base


# --- the runner applies the scenario to every mode -----------------------------------------


class FakeLoad:
    def __init__(self) -> None:
        self.on = False
        self.scheduled = False
        self.starts = 0
        self.calls: list[tuple[str, float | None]] = []

    def start(self, duration_s: float | None = None, scheduled: bool = False) -> bool:
        self.calls.append(("start", duration_s))
        self.on, self.scheduled = True, scheduled
        self.starts += 1
        return True

    def stop(self) -> bool:
        self.calls.append(("stop", None))
        self.on = self.scheduled = False
        return True

    def toggle(self) -> bool:
        return self.stop() if self.on else self.start()


@dataclasses.dataclass
class FakeBackend(Backend):
    """Replies from the controller simulator: acceptance by category, drafting dearer under load."""

    load: FakeLoad
    kind: str = "fake"
    draft_channel: str = "request"
    model: str = "fake"
    url: str = "fake://"

    def __post_init__(self) -> None:
        self.prompts: list[tuple[int, Prompt]] = []
        self.rng = random.Random(0)

    def start(self) -> None:
        pass

    def complete(self, prompt: Prompt, k: int, *, sequence: str | None = None) -> Reply:
        from test_controllers_adaptive import Sim

        self.prompts.append((k, prompt))
        alpha = {"code": 0.9, "prose": 0.5}.get(prompt.category, 0.7)
        sim = Sim(alpha=alpha, d=3.0 if self.load.on else 0.2, tokens=48)
        o = sim.reply(k, self.rng)
        return Reply(
            success=True,
            latency_ms=o.latency_ms,
            tokens=o.tokens,
            predicted_n=o.predicted_n,
            predicted_ms=o.predicted_ms,
            draft_n=o.draft_n,
            draft_n_accepted=o.draft_n_accepted,
        )

    def close(self) -> None:
        pass


def test_runner_applies_content_and_load_by_step_in_every_mode(tmp_path: Path) -> None:
    p = P.Profile()
    p.run.modes = ["fixed_2", "adaptive:model", "adaptive:bandit", "adaptive:heuristic"]
    p.run.warmup = 1
    p.run.warmup_interval_s = p.run.cooldown_s = 0.0
    p.scenario = sc(
        kind="both",
        steps=12,
        categories=["code", "prose"],
        shift_steps=[8],
        load_start_step=3,
        load_steps=4,
        settle_steps=1,
    )
    load = FakeLoad()
    backend = FakeBackend(load)
    bus = EventBus()
    rows = []
    bus.subscribe(lambda e: rows.append(e.row) if isinstance(e, StepResult) else None, inline=True)
    loads = []
    bus.subscribe(lambda e: loads.append(e) if isinstance(e, LoadChanged) else None, inline=True)
    runner = Runner(
        p, backend, bus, prompts=PromptSchedule(load_prompts(p)), run_dir=tmp_path, load=load
    )
    summary = runner.run()
    bus.close()
    # interleaved rounds: one load window covers steps 3-6 of every mode, in the same rounds
    assert load.calls == [("start", None), ("stop", None)]
    for mode in p.run.modes:
        mine = [r for r in rows if r.mode == mode]
        assert [r.step for r in mine] == list(range(1, 13))
        assert [r.phase for r in mine] == ["steady"] * 2 + ["load"] * 4 + ["recovery"] * 6
        assert [r.category for r in mine] == ["code"] * 7 + ["prose"] * 5
        assert len(runner.controller_ms[mode]) == 12
    ev = summary["evaluation"]
    assert [s["name"] for s in ev["segments"]] == [
        "code/steady",
        "code/load",
        "code/recovery",
        "prose/recovery",
    ]
    assert ev["adaptive_modes"] == ["adaptive:model", "adaptive:bandit", "adaptive:heuristic"]
    assert all(m["controller_ms_per_step"] is not None for m in summary["modes"])
    # warmup used the first segment's category; request texts are unique per request index
    # and the same in every mode (1 warmup + 12 steps)
    assert backend.prompts[0][1].category == "code"
    assert len({pr.text for _, pr in backend.prompts}) == 13
