"""`report` on files that are not what it expects: one line, exit 2, no traceback; a CSV that
holds several runs is split, never merged.

The command runs in-process (`cli.main`, stdout and stderr captured: the entry point's own
code) on files written here; the run folder read back is one the real sweep wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from halospec_tui import cli
from halospec_tui.core import results
from halospec_tui.core.results import HALOSPEC_COLUMNS, ResultsFileError

HEADER = ",".join(HALOSPEC_COLUMNS)


def halospec_csv(runs: int, steps: int = 3) -> str:
    """The original harness's CSV: its eight columns, `runs` runs appended (global_step
    restarting at 1 in each), fixed_2, fixed_4 and an adaptive mode whose k goes 2, 3, 4."""
    lines = [HEADER]
    for _ in range(runs):
        g = 0
        for mode in ("fixed_2", "fixed_4", "adaptive"):
            for s in range(1, steps + 1):
                g += 1
                k = int(mode[-1]) if mode.startswith("fixed") else 1 + s
                lines.append(f"{g},{s},{mode},steady,{k},1,{100 + 10 * k + s},32")
    return "\n".join(lines) + "\n"


def _report(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["report", "--text", *argv])
    out, err = capsys.readouterr()
    return int(code), out, err


GOOD_ROW = "1,1,fixed_2,steady,2,1,120.5,32"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file (expected a results CSV with a header line)"),
        (b"\n \n", "empty file"),
        (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)), "a binary file (expected a results CSV"),
        (
            (HEADER + "\n1,1,fixed_2,st\xe9ady,2,1,120,32\n").encode("latin-1"),
            "not UTF-8 text (byte 0xe9 at offset",
        ),
        (
            f"{HEADER}\n1,1,fixed_2,steady\n".encode(),
            ".csv:2: expected 8 values (one per column), got 4",
        ),
        (f"{HEADER}\n{GOOD_ROW},9\n".encode(), ".csv:2: expected 8 values (one per column), got 9"),
        (f"{HEADER},bogus\n{GOOD_ROW},x\n".encode(), "unknown column 'bogus'"),
        (f"{HEADER},error,error\n{GOOD_ROW},a,b\n".encode(), "a column named twice"),
        (
            f"{HEADER}\n1,1,fixed_2,steady,2,1,nan,32\n".encode(),
            ":2: latency_ms: expected a finite",
        ),
        (f"{HEADER}\n1,1,fixed_2,steady,2,1,120,inf\n".encode(), ":2: tokens: expected a finite"),
        (f"{HEADER}\n1,1,fixed_2,steady,2.5,1,120,32\n".encode(), "draft_length: expected a whole"),
        (
            f"{HEADER}\n1,1,fixed_2,steady,two,1,120,32\n".encode(),
            "draft_length: expected a number",
        ),
        (f"{HEADER}\n1,1,fixed_2,steady,,1,120,32\n".encode(), "draft_length: expected a value"),
        (b"a,b,c\n1,2,3\n", "expected a results CSV starting with global_step,step,mode"),
        (f'{HEADER}\n{GOOD_ROW[:-2]}"{"x" * 200_000}\n'.encode(), ":2: not CSV (field larger"),
        (b'{"modes": []}', "expected a results CSV starting with"),
    ],
)
def test_unreadable_csv_is_one_line_exit_2(
    tmp_path: Path, content: bytes, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "results.csv"
    path.write_bytes(content)
    code, out, err = _report([str(path)], capsys)
    assert code == 2, err
    assert out == "" and err.count("\n") == 1 and expected in err, err
    assert str(path) in err and "Traceback" not in err


def test_a_folder_or_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _report([str(tmp_path)], capsys)
    assert (code, err.count("\n")) == (2, 1) and "no results.csv in this folder" in err
    code, _, err = _report([str(tmp_path / "nope.csv")], capsys)
    assert (code, err.count("\n")) == (2, 1) and "no such file or folder" in err


def test_byte_order_mark_and_blank_lines_are_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.csv"
    path.write_text(halospec_csv(1).replace("\n", "\n\n", 2), encoding="utf-8-sig")
    rows = results.load_rows(path)
    assert len(rows) == 9
    code, out, err = _report([str(path)], capsys)
    assert code == 0 and err == "" and "fixed_4" in out


def test_several_runs_in_one_csv_are_split_never_merged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """HaloSpec appends every run to one CSV: global_step restarts at 1. Merged, the restart
    looked like a change of draft length and the runs' steps were pooled."""
    path = tmp_path / "results_phase0.csv"
    path.write_text(halospec_csv(3))
    rows = results.load_rows(path)
    assert results.run_starts(rows) == [0, 9, 18]
    assert [len(r) for r in results.split_runs(rows)] == [9, 9, 9]
    code, out, err = _report([str(path)], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1, err
    assert (
        "holds 3 runs (global_step restarts on lines 11, 20); choose one with --run 1 to 3" in err
    )
    for n in (1, 3):
        code, out, err = _report(["--run", str(n), str(path)], capsys)
        assert code == 0 and err == "", err
        _, summary = results.read_run(path, n)
        by_mode = {m["mode"]: m for m in summary["modes"]}
        assert {m: s["steps"] for m, s in by_mode.items()} == {
            "fixed_2": 3,
            "fixed_4": 3,
            "adaptive": 3,
        }
        # the adaptive mode's own changes (2 -> 3 -> 4), not the restart's (4 -> 2)
        assert by_mode["adaptive"]["draft_changes"] == 2
        assert by_mode["fixed_2"]["draft_changes"] == 0
    for bad in ("0", "4"):
        code, out, err = _report(["--run", bad, str(path)], capsys)
        assert code == 2 and err.count("\n") == 1 and "--run: expected 1 to 3" in err, err
    # one run: --run 1 is that run
    one = tmp_path / "one.csv"
    one.write_text(halospec_csv(1))
    assert _report(["--run", "1", str(one)], capsys)[0] == 0
    with pytest.raises(ResultsFileError, match="--run: expected 1 to 1"):
        results.read_run(one, 2)


@pytest.mark.parametrize(
    "summary",
    [
        "not json",
        "[1, 2]",
        '{"modes": 5, "recommendation": 1}',
        '{"modes": [{"mode": "fixed_2"}], "recommendation": "x"}',
        '{"modes": [{"mode": "fixed_2", "avg_ms": "x"}, {"mode": "fixed_4"}, '
        '{"mode": "adaptive"}], "recommendation": {"mode": 3}}',
        '{"modes": [{"mode": "fixed_2", "draft_control": 5}], "recommendation": {}}',
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_a_damaged_summary_json_falls_back_to_the_rows(
    tmp_path: Path, summary: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "results.csv").write_text(halospec_csv(1))
    (tmp_path / "summary.json").write_text(summary)
    code, out, err = _report([str(tmp_path)], capsys)
    assert code == 0, err
    assert "Traceback" not in err and err.count("\n") <= 1
    assert "fixed_4" in out and "adaptive" in out


def test_summary_json_of_the_run_is_used_when_it_fits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "results.csv").write_text(halospec_csv(1))
    _, computed = results.read_run(tmp_path)
    computed["winner"] = "fixed_4"
    computed["recommendation"]["mode"] = "fixed_4"
    (tmp_path / "summary.json").write_text(json.dumps(computed))
    _, saved = results.read_run(tmp_path)
    assert saved["recommendation"]["mode"] == "fixed_4"


def test_an_endless_file_is_refused_not_read(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _report(["/dev/zero"], capsys)
    assert code == 2 and err == (
        "halospec-tui: /dev/zero: a binary file (expected a results CSV, UTF-8 text)\n"
    )
