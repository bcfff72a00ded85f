"""The one way a setting is declared: a dataclass field with its default, its allowed range or
choices, and a line that says what it means.

Every settings dataclass uses it: the profile's own tables and each controller's settings
(halospec_tui/controllers). Profile validation reads `lo`/`hi`/`choices` from the field's
metadata, and docs/profiles.md is generated from the same metadata, so a setting is declared,
checked and documented in one place.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


def setting(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] | None = None,
    doc: str = "",
) -> Any:
    """A dataclass field: `default` (lists and dicts copied per instance), inclusive bounds
    `lo`/`hi` for numbers, `choices` for strings, and `doc` for docs/profiles.md."""
    meta = {"lo": lo, "hi": hi, "choices": choices, "doc": doc}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)
