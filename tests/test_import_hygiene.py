"""The core and the backends never import textual: headless runs and scripts stay UI-free."""

from __future__ import annotations

import subprocess
import sys

CORE_MODULES = [
    "halospec_tui.core.runner",
    "halospec_tui.core.events",
    "halospec_tui.core.stats",
    "halospec_tui.core.load",
    "halospec_tui.core.results",
    "halospec_tui.controllers.registry",
    "halospec_tui.core.verdict",
    "halospec_tui.prompts",
    "halospec_tui.session",
    "halospec_tui.headless",
    "halospec_tui.backends.factory",
    "halospec_tui.backends.openai_compat",
    "halospec_tui.backends.embedded.server",
    "halospec_tui.backends.embedded.engine",
]


def test_core_imports_no_textual() -> None:
    code = (
        "import sys\n"
        f"for m in {CORE_MODULES!r}: __import__(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_headless_cli_path_imports_no_textual() -> None:
    code = (
        "import sys, halospec_tui.cli as c\n"
        "c.build_parser()\n"
        "print(any(m.startswith('textual') for m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
