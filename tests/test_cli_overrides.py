"""Command-line overrides (--url, --model, --modes, --steps, --max-tokens, --set) validated as
the profile is, and evaluate's progress line with the time left."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from halospec_tui import profile as P
from halospec_tui.cli import build_parser, overrides_from
from halospec_tui.core.events import ModeFinished, StepResult, StepRow
from halospec_tui.headless import ProgressLine, clock
from tests.conftest import ROOT, fast_profile

CLI = [sys.executable, "-m", "halospec_tui"]


def _apply(argv: list[str], prof: P.Profile | None = None) -> P.Profile:
    prof = prof or fast_profile()
    args = build_parser().parse_args(argv)
    return P.with_overrides(prof, overrides_from(args, prof))


def test_named_overrides_and_set_change_the_profile() -> None:
    base = fast_profile()
    p = _apply(
        [
            "run",
            "--url",
            "http://127.0.0.1:9999",
            "--model",
            "qwen",
            "--modes",
            "fixed_1, fixed_4,adaptive:bandit",
            "--steps",
            "7",
            "--max-tokens",
            "12",
            "--set",
            "run.seed=9",
            "--set",
            "load.scheduled=true",
            "--set",
            'run.order="blocks"',
            "--set",
            "controller.bandit.k_max=6",
        ],
        base,
    )
    assert p.backend.url == "http://127.0.0.1:9999" and p.request.model == "qwen"
    assert p.run.modes == ["fixed_1", "fixed_4", "adaptive:bandit"]
    assert (p.run.steps_fixed, p.run.steps_adaptive, p.request.max_tokens) == (7, 7, 12)
    assert (p.run.seed, p.load.scheduled, p.run.order) == (9, True, "blocks")
    assert p.controller.bandit.k_max == 6
    # the profile given is left as it was
    assert base.run.modes == ["fixed_1", "fixed_4", "adaptive"] and base.run.seed == 42
    # the top level (bare halospec-tui is run) takes them too
    assert _apply(["--steps", "3"]).run.steps_fixed == 3
    assert _apply([]) is not None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--set", "run.steps_fixed=abc"], ["--set run.steps_fixed=abc", "expected an integer"]),
        (["--set", "run.nope=1"], ["--set run.nope=1", "run.nope: unknown key"]),
        (["--set", "nosuch.key=1"], ["--set nosuch.key=1", "nosuch: unknown key"]),
        (["--set", "run=3"], ["--set run=3", "run is a section"]),
        (["--set", "run.seed.x=3"], ["--set run.seed.x=3", "run.seed is a setting"]),
        (["--set", "run.seed"], ["--set run.seed", "expected KEY=VALUE"]),
        (["--modes", "fixed_1,fixed_0"], ["--modes fixed_1,fixed_0", "run.modes[1]"]),
        (["--modes", "fixed_1,fixed_1"], ["--modes fixed_1,fixed_1", "each mode once"]),
        (["--steps", "0"], ["--steps 0", "run.steps_fixed", "from 1"]),
        (["--max-tokens", "-5"], ["--max-tokens -5", "request.max_tokens"]),
        (["--set", "run.metric=speed"], ["--set run.metric=speed", "tokens_per_s"]),
    ],
)
def test_bad_override_is_one_line_naming_the_option(argv: list[str], expected: list[str]) -> None:
    with pytest.raises(P.ProfileError) as e:
        _apply(["run", *argv])
    msg = str(e.value)
    assert "\n" not in msg
    for part in expected:
        assert part in msg, msg


def test_bad_override_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for bad in (["--set", "run.steps_fixed=abc"], ["--modes", "fixed_x"], ["--steps", "x"]):
        r = subprocess.run(
            [*CLI, "run", "--headless", "--out", str(out), *bad],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        if bad[0] != "--steps":  # argparse's own error: usage line, then the error line
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert bad[0] in r.stderr
        assert not out.exists()


def test_evaluate_takes_overrides_but_not_modes() -> None:
    p = _apply(["evaluate", "--max-tokens", "9", "--model", "m", "--steps"])
    assert (p.request.max_tokens, p.request.model) == (9, "m")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--modes", "fixed_1"])


def _row(i: int) -> StepResult:
    return StepResult(
        row=StepRow(
            global_step=i,
            step=i,
            mode="fixed_1",
            phase="steady",
            draft_length=1,
            success=1,
            latency_ms=10.0,
            tokens=5,
        )
    )


def test_progress_plain_lines_at_each_tenth_with_eta() -> None:
    t = [0.0]
    out = io.StringIO()
    seen: list[object] = []
    pr = ProgressLine(200, seen.append, out=out, tty=False, now=lambda: t[0])
    for i in range(1, 201):
        t[0] = i * 0.5  # 2 steps a second
        pr(_row(i))
    pr(ModeFinished(mode="fixed_1", summary={}))
    pr.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # one per tenth, not one per step
    assert lines[0] == "progress 20/200 steps (10 %) · 0:10 elapsed · 1:30 left"
    assert lines[-1].startswith("progress 200/200 steps (100 %)") and "0:00 left" in lines[-1]
    assert len(seen) == 201  # the wrapped printer saw every event


def test_progress_on_a_terminal_is_one_updating_line() -> None:
    t = [0.0]
    out = io.StringIO()
    pr = ProgressLine(10, None, out=out, tty=True, refresh_s=1.0, now=lambda: t[0])
    for i in range(1, 11):
        t[0] = i * 0.3
        pr(_row(i))
    pr.say("evaluate run 2/2")
    pr.finish()
    text = out.getvalue()
    assert "\n" in text and text.count("\n") == 2  # the said line, and the end
    assert text.count("\r\x1b[K") >= 3
    assert "progress 10/10 steps (100 %) · 0:03 elapsed · 0:00 left" in text
    assert clock(3725) == "1:02:05" and clock(65) == "1:05"


@pytest.mark.slow
def test_evaluate_prints_progress_with_eta_and_takes_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real evaluation on the embedded engine: in a pipe, plain progress lines (at most one
    per tenth) with the time left; --max-tokens reaches each run's profile.toml."""
    import tomllib

    from halospec_tui.cli import main
    from tests.test_evaluate import TINY

    prof = tmp_path / "tiny.toml"
    prof.write_text(TINY + "interleave = true\n", encoding="utf-8")
    out = tmp_path / "eval"
    argv = ["evaluate", "--profile", str(prof), "--out", str(out), "--max-tokens", "12"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    progress = [line for line in printed.splitlines() if line.startswith("progress ")]
    assert 1 <= len(progress) <= 10
    assert all(" elapsed · " in line and line.endswith(" left") for line in progress)
    assert progress[-1].startswith("progress 30/30 steps (100 %)")
    assert "\r" not in printed  # no terminal: no line rewritten in place
    used = tomllib.loads((out / "run-1" / "profile.toml").read_text())
    assert used["request"]["max_tokens"] == 12
