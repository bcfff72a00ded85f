"""Prompts: what a request asks, its category, and the JSONL suites that hold many of them.

A suite is a JSONL file (one object per line: `id`, `category`, `prompt`) or `builtin:NAME`,
a suite shipped in halospec_tui/data/prompts/NAME.jsonl (NAME may be a pattern: `builtin:ngram-*`
joins the suites it matches). The categories are defined here
once; the profile, the scenario and the embedded engine (whose acceptance depends on them)
read them from here.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from importlib import resources

from halospec_tui import textfile

SUITE_LIMIT = 256 << 20  # bytes of a prompt suite
CATEGORIES = ("code", "prose", "math", "json")


@dataclass
class Prompt:
    id: str
    category: str
    text: str


class PromptsError(ValueError):
    """A suite cannot be read or has a bad line; the message is one line saying where."""


def builtin_suites() -> list[str]:
    root = resources.files("halospec_tui") / "data" / "prompts"
    return sorted(p.name[:-6] for p in root.iterdir() if p.name.endswith(".jsonl"))


def _read_suite(spec: str, key: str) -> tuple[str, str]:
    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        # a pattern joins suites: builtin:ngram-* is every n-gram suite, one category each,
        # which is what a content-shift scenario across them needs
        names = fnmatch.filter(builtin_suites(), name) if "*" in name else [name]
        root = resources.files("halospec_tui") / "data" / "prompts"
        if not names or not all((root / f"{n}.jsonl").is_file() for n in names):
            raise PromptsError(
                f"{key}: no built-in suite {name!r} (expected one of: {', '.join(builtin_suites())},"
                " or a pattern such as ngram-*)"
            )
        return "\n".join((root / f"{n}.jsonl").read_text(encoding="utf-8") for n in names), spec
    try:
        return textfile.read_text(spec, what="a JSONL prompt suite", limit=SUITE_LIMIT), spec
    except textfile.TextFileError as e:
        raise PromptsError(f"{key}: {e}") from None


def load_suite(spec: str, default_category: str, *, key: str = "prompts file") -> list[Prompt]:
    """The prompts of suite `spec` (a path or builtin:NAME); a line without a category gets
    `default_category`. PromptsError names `key` (the setting that named the suite) when the
    suite cannot be read, and the file and line when a line is bad."""
    text, where = _read_suite(spec, key)
    prompts: list[Prompt] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise PromptsError(f"{where}:{n}: not valid JSON ({e.msg})") from None
        except RecursionError:
            raise PromptsError(f"{where}:{n}: not valid JSON (nested too deeply)") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str) or not obj["prompt"]:
            raise PromptsError(f'{where}:{n}: expected an object with a non-empty "prompt" string')
        cat = obj.get("category", default_category)
        if cat not in CATEGORIES:
            raise PromptsError(
                f"{where}:{n}: category: expected one of {', '.join(CATEGORIES)}, got {cat!r}"
            )
        prompts.append(Prompt(id=str(obj.get("id", f"{n}")), category=cat, text=obj["prompt"]))
    if not prompts:
        raise PromptsError(f"{where}: expected at least one prompt line")
    return prompts
