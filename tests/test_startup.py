"""Start-up: `--help`, argparse errors, option conflicts and profile refusals answer without
importing the heavy modules a run needs (numpy, httpx, psutil, textual): ~0.25 s instead of
~1 s on the 2-core test machine (docs/reliability.md). Asserted by what is imported, not by
time."""

from __future__ import annotations

import subprocess
import sys

from numpy.polynomial.hermite_e import hermegauss

from halospec_tui.controllers import model
from tests.conftest import ROOT

HEAVY = ("numpy", "httpx", "psutil", "textual", "plotext", "rich")


def _loaded_after(code: str) -> list[str]:
    r = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    loaded = set(r.stdout.split())
    return [m for m in HEAVY if m in loaded]


def test_the_command_line_and_the_profile_import_nothing_heavy() -> None:
    assert _loaded_after("import halospec_tui.cli") == []
    assert (
        _loaded_after("from halospec_tui import profile; profile.load('profiles/quick.toml')") == []
    )
    refusals = (
        "['--help']",
        "['--bogus']",
        "['--pick', '1']",
        "['--headless', '--profile', 'profiles/nope.toml']",
        "['run', '--check', '--out', '']",
    )
    for argv in refusals:
        code = (
            "import contextlib, io\nfrom halospec_tui import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            f"    cli.main({argv})"
        )
        assert _loaded_after(code) == [], argv


def test_gauss_hermite_table_is_numpys() -> None:
    """model.py writes hermegauss(7) out (so that loading a profile needs no numpy): the same
    floats, bit for bit, so the controller decides exactly as before."""
    nodes, weights = hermegauss(7)
    assert (
        tuple((float(x), float(w)) for x, w in zip(nodes, weights, strict=True))
        == model._HERMEGAUSS_7
    )
