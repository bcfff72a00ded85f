"""Prompts: the single HaloSpec prompt, or a JSONL suite (id, category, prompt).

`builtin:NAME` names a suite shipped in halospec_tui/data/prompts/NAME.jsonl.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from halospec_tui.backends.base import Prompt
from halospec_tui.profile import CATEGORIES, Profile, ProfileError


def builtin_suites() -> list[str]:
    root = resources.files("halospec_tui") / "data" / "prompts"
    return sorted(p.name[:-6] for p in root.iterdir() if p.name.endswith(".jsonl"))


def _read_suite(spec: str) -> tuple[str, str]:
    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        res = resources.files("halospec_tui") / "data" / "prompts" / f"{name}.jsonl"
        if not res.is_file():
            raise ProfileError(
                f"request.prompts_file: no built-in suite {name!r} (expected one of: {', '.join(builtin_suites())})"
            )
        return res.read_text(encoding="utf-8"), spec
    path = Path(spec)
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError as e:
        raise ProfileError(
            f"request.prompts_file: cannot read {spec} ({e.strerror or e})"
        ) from None


def load_prompts(profile: Profile) -> list[Prompt]:
    """The prompts of a profile; a bad suite raises ProfileError with file and line."""
    r = profile.request
    if not r.prompts_file:
        return [Prompt(id="p0", category=r.category, text=r.prompt)]
    text, where = _read_suite(r.prompts_file)
    prompts: list[Prompt] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ProfileError(f"{where}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str) or not obj["prompt"]:
            raise ProfileError(f'{where}:{n}: expected an object with a non-empty "prompt" string')
        cat = obj.get("category", r.category)
        if cat not in CATEGORIES:
            raise ProfileError(
                f"{where}:{n}: category: expected one of {', '.join(CATEGORIES)}, got {cat!r}"
            )
        prompts.append(Prompt(id=str(obj.get("id", f"{n}")), category=cat, text=obj["prompt"]))
    if not prompts:
        raise ProfileError(f"{where}: expected at least one prompt line")
    return prompts


class PromptSchedule:
    """Which prompt each request of a mode gets: the same sequence in every mode, so that
    modes are compared on the same content (request i of a mode -> prompts[i % n])."""

    def __init__(self, prompts: list[Prompt]) -> None:
        self.prompts = prompts

    def prompt_for(self, mode: str, request_index: int, step: int | None) -> Prompt:
        return self.prompts[request_index % len(self.prompts)]
