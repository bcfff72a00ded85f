"""Bad input is refused when it is read, in one line, with exit 2 and nothing written.

Profiles (non-finite numbers, malformed URLs, option combinations), options (given to a
command that does not read them, empty, negative) and argparse's own errors. Most cases run
the real command in-process (`cli.main(argv)`, its stdout and stderr captured: the same code
the `halospec-tui` entry point runs); the ones a user meets first run it as a child process.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from halospec_tui import cli
from halospec_tui import profile as P
from tests.conftest import ROOT


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return int(code), out, err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[run]\nmargin = nan\n", "run.margin: expected a finite number, got nan"),
        ("[request]\ntimeout_s = inf\n", "request.timeout_s: expected a finite number, got inf"),
        ("[request]\ntemperature = -inf\n", "request.temperature: expected a finite number"),
        ("[embedded]\nalpha_code = nan\n", "embedded.alpha_code: expected a finite number"),
        ("[controller.latency]\nema_alpha = nan\n", "controller.latency.ema_alpha: expected a"),
        ("[score]\navg = inf\n", "score.avg: expected a finite number"),
        ("[backend]\nurl = 'http://[::1'\n", "backend.url: expected a well-formed URL"),
        ("[backend]\nurl = 'http://[zz::1]:80'\n", "backend.url: expected a well-formed URL"),
        ("[backend]\nurl = 'http://:8080'\n", "backend.url: expected a host"),
        ("[backend]\nurl = 'ftp://host'\n", "backend.url: expected an http:// or https:// URL"),
        ("[backend]\nurl = 'localhost:8080'\n", "backend.url: expected an http:// or https://"),
        ("[backend]\nurl = 'http://host:99999'\n", "backend.url: expected a port from 1 to 65535"),
        ("[backend]\nurl = 'http://host:0'\n", "backend.url: expected a port from 1 to 65535"),
        ("[backend]\nurl = 'http://host:abc'\n", "backend.url: expected a port from 1 to 65535"),
        ("[backend]\nurl = 'http://my host'\n", "backend.url: expected a URL without spaces"),
        ("[backend]\nurl = 'http://host/?a=1'\n", "backend.url: expected a base URL without"),
        ("[run]\nout_dir = ''\n", "run.out_dir: expected a folder"),
        ('[run]\nout_dir = "a\\u0000b"\n', "run.out_dir: expected text without NUL"),
        ('[run]\nmodes = ["fixed_4\\n"]\n', "run.modes[0]: expected fixed_K"),
        ("[load]\nmodes = ['adaptve']\n", "load.modes[0]: expected 'adaptive' or a mode"),
        ('[run]\n"a\\nb" = 1\n', "'run.a\\nb': unknown key"),
        ("[run]\nwarmup = 1\nwarmup = 2\n", "not valid TOML (Cannot overwrite a value"),
        ("[nonsense]\nx = 1\n", "nonsense: unknown key"),
        ("[run]\nwarmup = 1979-05-27\n", "run.warmup: expected an integer"),
        ("[[run]]\nwarmup = 1\n", "run: expected a table [run]"),
        ("[run]\norder = '" + "x" * 500 + "'\n", "run.order: expected one of auto"),
    ],
)
def test_bad_settings_are_refused_at_load_in_one_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(P.ProfileError) as e:
        P.load(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and expected in msg, msg
    assert "\n" not in msg and len(msg) < 400


def test_good_urls_pass() -> None:
    for url in (
        "http://127.0.0.1:8080",
        "https://example.com",
        "http://[::1]:8000/v1",
        "HTTP://localhost:1234/",
        "http://user@host:80",
    ):
        assert P.url_problem(url) is None, url


def test_validate_checks_a_profile_changed_after_loading() -> None:
    """The one check every entry calls (the loader, CLI overrides, code): a profile built or
    edited in memory gets the file's checks, so nothing reaches a run unchecked."""
    for change in (
        lambda p: setattr(p.run, "margin", float("nan")),
        lambda p: setattr(p.run, "warmup", -3),
        lambda p: setattr(p.run, "warmup", "5"),
        lambda p: setattr(p.request, "timeout_s", float("inf")),
        lambda p: setattr(p.backend, "url", "http://[::1"),
        lambda p: setattr(p.backend, "kind", "ollama"),
        lambda p: setattr(p.controller.latency, "ema_alpha", float("nan")),
        lambda p: setattr(p.run, "out_dir", ""),
    ):
        p = P.Profile()
        change(p)
        with pytest.raises(P.ProfileError) as e:
            P.validate(p)
        assert "\n" not in str(e.value)
    P.validate(P.Profile())
    P.validate(P.embedded_default())


def test_unreadable_profiles(tmp_path: Path) -> None:
    with pytest.raises(P.ProfileError, match=r": a folder \(expected a TOML profile\)"):
        P.load(tmp_path)
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"[run\xd0\xff\xfe")
    with pytest.raises(P.ProfileError, match=r"not UTF-8 text \(byte 0xd0 at offset 4"):
        P.load(binary)
    elf = tmp_path / "elf.toml"
    elf.write_bytes(b"\x7fELF\x02\x01\x01\x00\xd0\xff\xfe")
    with pytest.raises(P.ProfileError, match=r"a binary file \(expected a TOML profile"):
        P.load(elf)
    with pytest.raises(P.ProfileError, match=r"/dev/zero: a binary file"):
        P.load("/dev/zero")  # refused after its first 64 KiB, not read forever
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 100_000)
    with pytest.raises(P.ProfileError, match=r"not valid TOML \(nested too deeply\)"):
        P.load(deep)
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (2 << 20))
    with pytest.raises(P.ProfileError, match=r"larger than 1 MiB \(expected a TOML profile\)"):
        P.load(big)
    for suite, expected in (
        ("/dev/zero", "request.prompts_file: /dev/zero: a binary file"),
        ("deep.jsonl", "deep.jsonl:1: not valid JSON (nested too deeply)"),
        ("nope.jsonl", "request.prompts_file: nope.jsonl: file not found"),
    ):
        (tmp_path / "deep.jsonl").write_text("[" * 100_000 + "\n")
        prof = tmp_path / "suite.toml"
        prof.write_text(f"[request]\nprompts_file = '{suite}'\n")
        with pytest.raises(P.ProfileError) as e:
            P.load(prof)
        assert expected in str(e.value) and "\n" not in str(e.value), e.value


def test_malformed_url_never_waits_for_a_health_check(tmp_path: Path) -> None:
    """Before: a traceback, or a 10 s health check, exit 3 and a run folder left behind."""
    prof = tmp_path / "p.toml"
    prof.write_text("[backend]\nkind = 'openai'\nurl = 'http://[::1:8080'\n")
    out = tmp_path / "out"
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "halospec_tui", "--headless", "--profile", str(prof)]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    took = time.monotonic() - t0
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "backend.url" in r.stderr and str(prof) in r.stderr
    assert r.stdout == "" and not out.exists()
    assert took < 10  # far below the health check's 10 s, whatever the machine's load


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--pick", "1"], "--pick is an option of discover"),
        (["--write", "x.toml"], "--write is an option of discover"),
        (["--address", "http://127.0.0.1:9"], "--address is an option of discover"),
        (["--probe-timeout", "2"], "--probe-timeout is an option of discover"),
        (["--headless", "report", "x"], "--headless is an option of run, not of report"),
        (["--profile", "p.toml", "report", "x"], "--profile is an option of run or evaluate"),
        (["--headless", "evaluate"], "--headless is an option of run, not of evaluate"),
        (["--discover", "run"], "--discover is the discover command"),
        (["--discover", "--headless"], "--headless is an option of run"),
        (["--out", ""], "argument --out: expected a folder, got ''"),
        (["run", "--out", ""], "argument --out: expected a folder, got ''"),
        (["evaluate", "--out", ""], "argument --out: expected a folder, got ''"),
        (["--profile", ""], "argument --profile: expected a profile file"),
        (["--discover", "--probe-timeout", "-1"], "--probe-timeout: expected seconds above 0"),
        (["--discover", "--probe-timeout", "nan"], "--probe-timeout: expected seconds above 0"),
        (["--discover", "--probe-timeout", "inf"], "--probe-timeout: expected seconds above 0"),
        (["--discover", "--address", "ftp://x"], "--address: expected an http:// or https://"),
        (["--discover", "--address", "http://[::1"], "--address: expected a well-formed URL"),
        (["discover", "--write", ""], "argument --write: expected a file"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["frob"], "invalid choice: 'frob'"),
        (["report"], "the following arguments are required: RUN"),
        (["--headless", "--profile"], "argument --profile: expected one argument"),
        (["evaluate", "--runs", "x"], "argument --runs: invalid int value"),
        (["report", "--run", "x", "f.csv"], "argument --run: invalid int value"),
    ],
)
def test_bad_options_are_one_line_exit_2(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = _main(argv, capsys)
    assert code == 2, err
    assert out == "" and err.count("\n") == 1 and expected in err, err
    assert err.startswith("halospec-tui"), err
    assert "usage:" not in err and "Traceback" not in err


def test_argparse_error_is_one_line_as_a_child_process(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "halospec_tui", "--headless", "--nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr == (
        "halospec-tui: error: unrecognized arguments: --nope (see halospec-tui --help)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_check_validates_says_what_would_run_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prof = tmp_path / "p.toml"
    prof.write_text("name = 'tiny'\n[run]\nmodes = ['fixed_1', 'adaptive']\nsteps_fixed = 3\n")
    out = tmp_path / "out"
    code, text, err = _main(["run", "--check", "--profile", str(prof), "--out", str(out)], capsys)
    assert (code, err) == (0, "")
    assert (
        text
        == f"run OK: profile tiny, 2 modes, 18 steps, backend embedded (started by the harness), into {out}\n"
    )
    code, text, err = _main(["--check", "--profile", str(prof), "--out", str(out)], capsys)
    assert code == 0 and text.startswith("run OK")
    (tmp_path / "file").write_text("")
    code, text, err = _main(
        ["--check", "--profile", str(prof), "--out", str(tmp_path / "file" / "x")], capsys
    )
    assert code == 2 and err.count("\n") == 1 and "is a file (expected a folder)" in err
    code, text, err = _main(
        ["evaluate", "--check", "--profile", str(prof), "--out", str(out)], capsys
    )
    assert code == 0 and text.startswith("evaluate (1 run) OK: profile tiny, 9 modes"), text
    code, text, err = _main(["report", "--check", "x"], capsys)
    assert code == 2 and "unrecognized arguments: --check" in err
    assert set(tmp_path.iterdir()) == {prof, tmp_path / "file"}  # nothing written


def test_a_managed_server_binary_or_model_that_is_not_there_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: exit 3 ("server not answering") with a run folder written. What a profile names
    on this machine is checked (Backend.preflight) before the run folder is created."""
    out = tmp_path / "out"
    for backend, expected in (
        (f"binary = '{tmp_path / 'nope'}'", "backend.binary"),
        (f"binary = '{tmp_path}'", "is not an executable file"),
        (f"binary = '/bin/true'\nmodel_path = '{tmp_path / 'm.gguf'}'", "backend.model_path"),
    ):
        prof = tmp_path / "p.toml"
        prof.write_text(f"[backend]\nkind = 'llamacpp-managed'\n{backend}\n")
        for extra in (["--headless"], ["--check"]):
            code, text, err = _main([*extra, "--profile", str(prof), "--out", str(out)], capsys)
            assert code == 2 and err.count("\n") == 1 and expected in err, err
            assert not out.exists()


def test_evaluate_checks_the_backend_before_its_folder_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prof = tmp_path / "p.toml"
    prof.write_text(f"[backend]\nkind = 'llamacpp-managed'\nbinary = '{tmp_path / 'nope'}'\n")
    out = tmp_path / "eval"
    code, text, err = _main(["evaluate", "--profile", str(prof), "--out", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1 and "backend.binary" in err, err
    assert not out.exists()
