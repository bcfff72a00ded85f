"""Regenerate docs/profiles.md from the profile dataclasses: python scripts/gen_profile_docs.py"""

from pathlib import Path

from halospec_tui.profile import settings_reference

MARK = "## Every setting\n"
doc = Path(__file__).resolve().parent.parent / "docs" / "profiles.md"
head = doc.read_text(encoding="utf-8").split(MARK)[0]
doc.write_text(
    head + MARK + "\nGenerated from the code by `python scripts/gen_profile_docs.py`; "
    "a test fails when it is out of date.\n\n" + settings_reference() + "\n",
    encoding="utf-8",
)
