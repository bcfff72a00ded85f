"""discover against a server whose answers are hostile, and --write where it cannot write.

A real HTTP server on loopback (tests/helpers.ScriptedServer) lists a model whose name holds a
newline, TOML, a NUL and a terminal escape; the real command (a child process) probes it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from halospec_tui import profile as P
from tests.conftest import ROOT
from tests.helpers import ScriptedServer

EVIL = "evil\n[run]\nwarmup = 999\x00\x1b[2J"


def _models(path: str) -> object:
    if path == "/v1/models":
        return {"object": "list", "data": [{"id": EVIL}]}
    return None


def _discover(url: str, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "halospec_tui", "discover", "--address", url, *extra],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_a_hostile_model_name_is_escaped_and_the_profile_written_loads(tmp_path: Path) -> None:
    with ScriptedServer(lambda n: 500, get=_models) as srv:
        r = _discover(srv.url, tmp_path, "--pick", "1", "--write", str(tmp_path / "p.toml"))
    assert r.returncode == 0, r.stderr
    listed = [line for line in r.stdout.splitlines() if line.startswith("1. ")]
    assert len(listed) == 1 and "evil\\n[run]\\nwarmup = 999\\x00\\x1b[2J" in listed[0]
    assert "\x1b" not in r.stdout and "\x00" not in r.stdout
    text = (tmp_path / "p.toml").read_text()
    assert "\nwarmup = 999" not in text  # the model name did not become TOML
    prof = P.load(tmp_path / "p.toml")  # loads and validates
    assert prof.run.warmup == 5 and prof.backend.url == srv.url
    assert prof.request.model.startswith("evil\\n")


def test_write_where_it_cannot_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with ScriptedServer(lambda n: 500, get=_models) as srv:
        for dest, expected in (
            (tmp_path, "cannot write (a folder (expected a file))"),
            (tmp_path / "file" / "p.toml", "cannot write"),
        ):
            r = _discover(srv.url, tmp_path, "--pick", "1", "--write", str(dest))
            assert r.returncode == 2, r.stderr
            assert r.stderr.count("\n") == 1 and expected in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no .tmp left behind
