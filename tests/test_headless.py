"""End to end: the real CLI as a child process, the embedded engine over real HTTP."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import pytest

from halospec_tui import profile as P
from tests.conftest import ROOT
from tests.helpers import wait_gone

CLI = [sys.executable, "-m", "halospec_tui"]


def _run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, cwd=ROOT, timeout=120, **kw
    )  # type: ignore[call-overload]


@pytest.mark.slow
def test_quick_profile_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # profiles/quick.toml as shipped, but a shared test machine's other jobs must not flag its
    # steps as contaminated (tests/test_rounds.py covers that check)
    quick = P.load(ROOT / "profiles" / "quick.toml")
    quick.run.foreign_cpu_limit = 0.0
    quick.save(tmp_path / "quick.toml")
    proc = subprocess.Popen(
        [*CLI, "--headless", "--profile", str(tmp_path / "quick.toml"), "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert wait_gone(proc.pid) == []
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 8 * 5 + 40
    assert list(rows[0])[:8] == [
        "global_step",
        "step",
        "mode",
        "phase",
        "draft_length",
        "success",
        "latency_ms",
        "tokens",
    ]
    assert [r["global_step"] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
    # the draft length really changed what the server did
    for r in rows:
        assert r["success"] == "1", r["error"]
        assert r["draft_n"] != "" and float(r["observed_k"]) <= int(r["draft_length"]) + 1e-9
    adaptive = [r for r in rows if r["mode"] == "adaptive"]
    phases = [r["phase"] for r in adaptive]
    assert {"steady", "load", "recovery"} <= set(phases)
    assert phases.index("steady") < phases.index("load") < phases.index("recovery")
    steady = [float(r["latency_ms"]) for r in adaptive if r["phase"] == "steady"]
    load = [float(r["latency_ms"]) for r in adaptive if r["phase"] == "load"]
    assert median(load) > median(steady)
    summary = json.loads((out / "summary.json").read_text())
    assert [m["mode"] for m in summary["modes"]] == [f"fixed_{k}" for k in range(1, 9)] + [
        "adaptive"
    ]
    for key in (
        "mode",
        "steps",
        "successes",
        "failures",
        "success_rate",
        "avg_ms",
        "median_ms",
        "p95_ms",
        "min_ms",
        "max_ms",
        "stddev_ms",
        "tokens_per_s",
        "score",
        "acceptance",
        "draft_changes",
        "convergence_step",
        "phases",
        "categories",
        "draft_control",
    ):
        assert key in summary["modes"][0], key
    assert all(m["draft_control"]["verdict"] == "applied" for m in summary["modes"])
    assert summary["winner"] in [m["mode"] for m in summary["modes"]]
    assert (summary["profile"], summary["backend"]) == ("quick", "embedded")
    assert (out / "profile.toml").exists() and (out / "responses.jsonl").exists()
    assert "RECOMMENDATION" in stdout and "adaptive:" in stdout


@pytest.mark.parametrize("command", [[], ["run"]])  # bare halospec-tui is the run command
def test_bad_profile_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[run]\nwarmup = 'lots'\n")
    out = tmp_path / "out"
    r = _run([*command, "--headless", "--profile", str(bad), "--out", str(out)])
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "run.warmup" in lines[0] and str(bad) in lines[0]
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_help_lists_the_commands_and_each_has_its_own(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from halospec_tui.cli import build_parser

    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--help"])
    assert e.value.code == 0
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert "{run,report,evaluate,discover,build-server}" in usage and "--profile FILE" in usage
    for command, option in (
        ("run", "--headless"),
        ("report", "--text"),
        ("evaluate", "--runs N"),
        ("discover", "--pick N"),
        ("build-server", "--jobs N"),
    ):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args([command, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: halospec-tui {command}") and option in out, out
    # an option given before the command is not lost to the command's defaults
    args = build_parser().parse_args(["--profile", "p.toml", "evaluate", "--runs", "2"])
    assert (args.command, args.profile, args.runs) == ("evaluate", "p.toml", 2)
    args = build_parser().parse_args(["--discover", "--pick", "2"])
    assert (args.command, args.discover, args.pick) == (None, True, 2)


def test_not_toml_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    r = _run(["--headless", "--profile", str(bad)])
    assert r.returncode == 2 and "not valid TOML" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("suite", "expected"),
    [
        (None, "request.prompts_file: suite.jsonl: file not found"),
        ("builtin:nope", "no built-in suite 'nope'"),
        ("builtin:nope-*", "no built-in suite 'nope-*'"),
        ('{"id": "a", "prompt": "hi"}\n{"id": "b"\n', "suite.jsonl:2: not valid JSON"),
        ('{"id": "a", "category": "poetry", "prompt": "hi"}\n', "suite.jsonl:1: category"),
        ("\n\n", "expected at least one prompt line"),
    ],
)
def test_bad_prompt_suite_exits_2_naming_the_profile(
    tmp_path: Path, suite: str | None, expected: str
) -> None:
    """The suite is read when the profile loads: one line that names the profile and, for a
    bad line, the suite's file and line number; nothing is started, nothing written."""
    spec = suite if suite and suite.startswith("builtin:") else "suite.jsonl"
    if suite is not None and not suite.startswith("builtin:"):
        (tmp_path / "suite.jsonl").write_text(suite)
    prof = tmp_path / "p.toml"
    prof.write_text(f'[request]\nprompts_file = "{spec}"\n')
    out = tmp_path / "out"
    r = _run(["--headless", "--profile", str(prof), "--out", str(out)])
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(prof) in lines[0] and expected in lines[0], lines
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_unreachable_server_exits_3_before_any_mode(tmp_path: Path) -> None:
    prof = tmp_path / "p.toml"
    prof.write_text(
        '[backend]\nkind = "openai"\nurl = "http://127.0.0.1:9"\nhealth_timeout_s = 0.5\n'
    )
    r = _run(["--headless", "--profile", str(prof), "--out", str(tmp_path / "o")])
    assert r.returncode == 3
    assert "http://127.0.0.1:9" in r.stderr and "Traceback" not in r.stderr
    assert "==" not in r.stdout  # no mode started
    assert (
        not (tmp_path / "o" / "results.csv").exists()
        or len((tmp_path / "o" / "results.csv").read_text().splitlines()) <= 1
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_keeps_rows_prints_summary_exits_130(tmp_path: Path, sig: int) -> None:
    prof = tmp_path / "p.toml"
    prof.write_text(
        '[run]\nmodes = ["fixed_2", "adaptive"]\nwarmup = 0\nsteps_fixed = 1000\n'
        'cooldown_s = 0.05\n[load]\nscheduled = true\nmodes = ["fixed_2"]\nstart_step = 2\n'
        "cores = 1\n"
    )
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*CLI, "--headless", "--profile", str(prof), "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        csvp = out / "results.csv"
        if csvp.exists() and len(csvp.read_text().splitlines()) > 6:
            break
        time.sleep(0.1)
    t0 = time.monotonic()
    os.kill(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 5.0
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "RECOMMENDATION" in stdout
    assert wait_gone(proc.pid) == []
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) >= 5
    summary = json.loads((out / "summary.json").read_text())
    # every row kept; a request in flight at the signal is abandoned and written as an
    # interrupted row, counted apart from the mode's steps
    interrupted = sum(m["interrupted"] for m in summary["modes"])
    assert sum(m["steps"] for m in summary["modes"]) + interrupted == len(rows)
    assert interrupted <= 1
    assert [r["error"] for r in rows if r["success"] == "0"] == ["interrupted"] * interrupted
    assert summary["cancelled"] is True
