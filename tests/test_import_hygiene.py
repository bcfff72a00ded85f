"""The rooms keep their dependency rules (docs/architecture.md), statically and at run time.

Statically: `lint-imports` checks the contracts in pyproject.toml ([tool.importlinter]) over
every import in the package. At run time: importing the UI-free rooms loads no textual, so
headless runs and scripts stay UI-free (this also catches imports the static check cannot
see, such as one made by importlib).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")

UI_FREE_MODULES = [
    "halospec_tui.core.runner",
    "halospec_tui.core.events",
    "halospec_tui.core.stats",
    "halospec_tui.core.load",
    "halospec_tui.core.results",
    "halospec_tui.core.verdict",
    "halospec_tui.core.evaluation.metrics",
    "halospec_tui.core.evaluation.text",
    "halospec_tui.controllers.registry",
    "halospec_tui.prompts",
    "halospec_tui.session",
    "halospec_tui.evaluation",
    "halospec_tui.headless",
    "halospec_tui.backends.factory",
    "halospec_tui.backends.openai_compat",
    "halospec_tui.backends.embedded.server",
    "halospec_tui.backends.embedded.engine",
]


def test_import_contracts_hold() -> None:
    out = subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout, out.stdout


def test_lint_imports_sees_the_imports(tmp_path: Path) -> None:
    """A contract the code breaks (the runner imports the profile) is reported as broken:
    the contracts above are checked against the real import graph, not an empty one."""
    config = tmp_path / "broken.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "halospec_tui"\n\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "the runner does not import the profile"\ntype = "forbidden"\n'
        'source_modules = ["halospec_tui.core.runner"]\n'
        'forbidden_modules = ["halospec_tui.profile"]\n',
        encoding="utf-8",
    )
    out = subprocess.run(
        [LINT_IMPORTS, "--no-cache", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0, out.stdout
    assert "halospec_tui.core.runner -> halospec_tui.profile" in out.stdout, out.stdout


def test_ui_free_rooms_import_no_textual() -> None:
    code = (
        "import sys\n"
        f"for m in {UI_FREE_MODULES!r}: __import__(m)\n"
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
