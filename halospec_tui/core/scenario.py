"""Scenarios: what changes during a mode, by step, identically in every mode.

A profile's ``[scenario]`` section describes a schedule that the runner applies to *every*
mode (fixed and adaptive alike), so that all modes meet the same conditions at the same
steps and can be compared step for step:

* **content** (``categories`` + ``shift_steps``): the category of the prompts. Segment 1 runs
  from step 1, segment i+1 from ``shift_steps[i]``; each request takes the next prompt of its
  segment's category (from the profile's suite, else the built-in suite of that category).
  Warmup requests use the first segment's category.
* **load** (``load_start_step`` + ``load_steps``): the CPU load injector is switched on just
  before step ``load_start_step`` and off just before step ``load_start_step + load_steps``,
  so every mode has the same loaded *steps* (a duration would cover more steps of a fast mode
  than of a slow one). The row's ``phase`` column says steady / load / recovery as before.
* ``unique_prompts``: each request index gets a distinct text (the prompt plus
  `` (request N)``), the same in every mode. The embedded engine draws acceptance from the
  prompt text, so with a fresh engine per mode every mode then meets the same acceptance draws
  (common random numbers): differences between modes are then differences of k, not luck.

**Segments** (what ``evaluate`` groups rows by) are the content segment of the row's step
combined with the row's load phase: ``code``, ``prose`` (content only), ``steady``, ``load``,
``recovery`` (load only), ``code/steady``, ``prose/load`` ... (both), or the single category
(or ``all``) for a stationary run. A label that occurs twice (json → prose → json) gets ``#2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from halospec_tui.profile import Profile, ScenarioSettings
from halospec_tui.prompts import Prompt, load_suite


@dataclass(frozen=True)
class ContentSegment:
    index: int  # 0-based
    category: str  # "" when the scenario has no content schedule
    first_step: int  # 1-based, inclusive
    last_step: int | None  # inclusive; None = to the end of the mode


def active(sc: ScenarioSettings) -> bool:
    return sc.kind != "none"


def has_content(sc: ScenarioSettings) -> bool:
    return active(sc) and bool(sc.categories)


def has_load(sc: ScenarioSettings) -> bool:
    return active(sc) and sc.load_steps > 0 and sc.load_start_step > 0


def content_segments(sc: ScenarioSettings) -> list[ContentSegment]:
    if not has_content(sc):
        return [ContentSegment(0, "", 1, None)]
    starts = [1, *sc.shift_steps]
    out = []
    for i, cat in enumerate(sc.categories):
        last = starts[i + 1] - 1 if i + 1 < len(starts) else None
        out.append(ContentSegment(i, cat, starts[i], last))
    return out


def content_segment_at(sc: ScenarioSettings, step: int | None) -> ContentSegment:
    """The content segment of a measured step (warmup, step None, is in the first)."""
    segs = content_segments(sc)
    if step is None:
        return segs[0]
    for seg in segs:
        if step >= seg.first_step and (seg.last_step is None or step <= seg.last_step):
            return seg
    return segs[-1]


def load_action(sc: ScenarioSettings, step: int) -> str | None:
    """'start' before the first loaded step, 'stop' before the first step after, else None."""
    if not has_load(sc):
        return None
    if step == sc.load_start_step:
        return "start"
    if step == sc.load_start_step + sc.load_steps:
        return "stop"
    return None


def loaded_steps(sc: ScenarioSettings) -> range:
    if not has_load(sc):
        return range(0)
    return range(sc.load_start_step, sc.load_start_step + sc.load_steps)


def segment_key(sc: ScenarioSettings, step: int, phase: str) -> tuple[int, str]:
    """(content segment index, load phase or '') of a row: what evaluate groups on."""
    seg = content_segment_at(sc, step)
    load_part = phase if (has_load(sc) or phase in ("load", "recovery")) else ""
    return seg.index, load_part


def segment_label(sc: ScenarioSettings, key: tuple[int, str]) -> str:
    index, load_part = key
    cat = content_segments(sc)[index].category if has_content(sc) else ""
    if cat and load_part:
        return f"{cat}/{load_part}"
    return cat or load_part or "all"


def unique_labels(sc: ScenarioSettings, keys: list[tuple[int, str]]) -> dict[tuple[int, str], str]:
    """Labels for segment keys in order; a repeated label gets '#2', '#3' ..."""
    seen: dict[str, int] = {}
    out: dict[tuple[int, str], str] = {}
    for key in keys:
        base = segment_label(sc, key)
        seen[base] = seen.get(base, 0) + 1
        out[key] = base if seen[base] == 1 else f"{base}#{seen[base]}"
    return out


def describe(sc: ScenarioSettings) -> dict[str, Any]:
    """A JSON-ready description (run summary, RunStarted settings, evaluation.json)."""
    return {
        "kind": sc.kind,
        "steps": sc.steps or None,
        "content": [
            {"category": s.category, "first_step": s.first_step, "last_step": s.last_step}
            for s in content_segments(sc)
            if s.category
        ],
        "load": (
            {"first_step": sc.load_start_step, "last_step": sc.load_start_step + sc.load_steps - 1}
            if has_load(sc)
            else None
        ),
        "unique_prompts": sc.unique_prompts,
        "settle_steps": sc.settle_steps,
    }


class PromptSchedule:
    """Which prompt each request of a mode gets: the same sequence in every mode, so that
    modes are compared on the same content (request i of a mode -> prompts[i % n])."""

    def __init__(self, prompts: list[Prompt]) -> None:
        self.prompts = prompts

    def prompt_for(self, mode: str, request_index: int, step: int | None) -> Prompt:
        return self.prompts[request_index % len(self.prompts)]


class ScenarioPromptSchedule(PromptSchedule):
    """The base schedule's prompts, by category per content segment, optionally made unique.

    Request i of a segment with category C gets pool_C[i % len(pool_C)], where pool_C is the
    profile's prompts of category C, or the built-in suite of C when the profile has none: the
    same prompt for the same request index in every mode.
    """

    def __init__(self, base: PromptSchedule, profile: Profile) -> None:
        super().__init__(base.prompts)
        self.base = base
        self.sc = profile.scenario
        self.pools: dict[str, list[Prompt]] = {}
        if has_content(self.sc):
            for cat in dict.fromkeys(self.sc.categories):
                pool = [p for p in base.prompts if p.category == cat]
                if not pool:
                    pool = load_suite(f"builtin:{cat}", cat)
                self.pools[cat] = pool

    def prompt_for(self, mode: str, request_index: int, step: int | None) -> Prompt:
        if self.pools:
            cat = content_segment_at(self.sc, step).category
            pool = self.pools[cat]
            prompt = pool[request_index % len(pool)]
        else:
            prompt = self.base.prompt_for(mode, request_index, step)
        if self.sc.unique_prompts:
            prompt = Prompt(
                id=prompt.id,
                category=prompt.category,
                text=f"{prompt.text} (request {request_index + 1})",
            )
        return prompt


def scenario_prompts(prompts: PromptSchedule, profile: Profile) -> PromptSchedule:
    """The runner's schedule: the scenario's when the profile has one, else `prompts` as is."""
    if not active(profile.scenario) or isinstance(prompts, ScenarioPromptSchedule):
        return prompts
    if not has_content(profile.scenario) and not profile.scenario.unique_prompts:
        return prompts
    return ScenarioPromptSchedule(prompts, profile)
