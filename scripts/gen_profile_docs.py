"""Regenerate docs/profiles.md's generated sections from the registries and the profile
dataclasses: python scripts/gen_profile_docs.py (a test fails when they are out of date)."""

from pathlib import Path

from halospec_tui.backends.registry import kinds_reference
from halospec_tui.profile import settings_reference

KINDS_MARK = "## Backend kinds\n"
MARK = "## Every setting\n"
doc = Path(__file__).resolve().parent.parent / "docs" / "profiles.md"
text = doc.read_text(encoding="utf-8")
head = text.split(KINDS_MARK)[0] if KINDS_MARK in text else text.split(MARK)[0]
doc.write_text(
    head
    + KINDS_MARK
    + "\nGenerated from `halospec_tui/backends/registry.py` by `python scripts/gen_profile_docs.py`.\n\n"
    + kinds_reference()
    + "\n\n"
    + MARK
    + "\nGenerated from the code by `python scripts/gen_profile_docs.py`; "
    "a test fails when it is out of date.\n\n" + settings_reference() + "\n",
    encoding="utf-8",
)
