"""`halospec-tui report A B`: two real runs on the embedded engine (the CLI as a child process,
real HTTP), then their comparison as JSON, text, Markdown, HTML and on screen, checked against
each run's own summary.json. The runs are made with the command-line overrides, so the same
runs check that the overrides reach the run folder's profile.toml."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from halospec_tui.core import compare as C
from halospec_tui.core import compare_report as R
from tests.conftest import ROOT, fast_profile

CLI = [sys.executable, "-m", "halospec_tui"]
MODES = ["fixed_1", "fixed_2", "fixed_4"]


def _cli(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=180)


def _run(tmp: Path, name: str, max_tokens: int) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp / name
    r = _cli(
        [
            "run",
            "--json",
            "--profile",
            str(tmp / "tiny.toml"),
            "--out",
            str(out),
            "--modes",
            ",".join(MODES),
            "--steps",
            "6",
            "--max-tokens",
            str(max_tokens),
            "--set",
            'run.order="interleaved"',  # TOML
            "--set",
            "run.until=steps",  # a bare word: a string
        ]
    )
    assert r.returncode == 0, r.stderr
    return out, r


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("compare")
    p = fast_profile()
    p.name = "tiny"
    p.run.modes = ["fixed_1", "adaptive"]  # overridden by --modes
    p.run.steps_fixed = p.run.steps_adaptive = 2  # overridden by --steps
    p.save(tmp / "tiny.toml")
    a, ra = _run(tmp, "a", 16)
    b, rb = _run(tmp, "b", 32)
    return {"tmp": tmp, "a": a, "b": b, "stdout_a": ra.stdout, "stderr_a": ra.stderr}


def _summary(run: Path) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())


def _estimates(run: Path) -> dict[str, float]:
    return {m["mode"]: m["confidence"]["estimate"]["value"] for m in _summary(run)["modes"]}


@pytest.mark.slow
def test_overrides_reach_the_run_and_json_is_the_summary(runs: dict[str, Any]) -> None:
    import tomllib

    prof = tomllib.loads((runs["a"] / "profile.toml").read_text())
    assert prof["run"]["modes"] == MODES
    assert prof["run"]["steps_fixed"] == prof["run"]["steps_adaptive"] == 6
    assert prof["request"]["max_tokens"] == 16
    assert prof["run"]["order"] == "interleaved"
    # --json: stdout is the summary and nothing else; the human lines went to stderr
    printed = json.loads(runs["stdout_a"])
    assert printed == _summary(runs["a"])
    assert "RECOMMENDATION" in runs["stderr_a"] and "results:" in runs["stderr_a"]
    assert [m["mode"] for m in printed["modes"]] == MODES
    assert all(m["steps"] == 6 for m in printed["modes"])


@pytest.mark.slow
def test_report_json_differences_match_each_summary(runs: dict[str, Any]) -> None:
    r = _cli(["report", str(runs["a"]), str(runs["b"]), "--json"])
    assert r.returncode == 0, r.stderr
    cmp = json.loads(r.stdout)
    assert cmp["baseline"] == "A" and [x["label"] for x in cmp["runs"]] == ["A", "B"]
    assert cmp["modes"] == MODES
    ea, eb = _estimates(runs["a"]), _estimates(runs["b"])
    for run, est in zip(cmp["runs"], (ea, eb), strict=True):
        for mode in MODES:
            # side by side: each run's own number from its summary.json
            assert run["modes"][mode]["value"] == pytest.approx(est[mode], rel=1e-3)
    diffs = {d["mode"]: d for d in cmp["differences"]}
    assert set(diffs) == set(MODES)
    for mode, d in diffs.items():
        assert d["run"] == "B" and d["baseline"] == "A"
        # the difference is the ratio of the two summaries' numbers, inside its own interval
        assert d["diff"] == pytest.approx(eb[mode] / ea[mode] - 1, abs=2e-3)
        assert d["lo"] <= d["diff"] <= d["hi"]
        assert 0 <= d["p_value"] <= 1
        assert d["verdict"] in ("better", "worse", "same", "better?", "worse?", "unclear")
        if d["verdict"] in ("better?", "worse?"):
            assert d["lo"] > 0 or d["hi"] < 0
        if d["verdict"] in ("better", "worse"):
            assert (d["lo"] > 0) == (d["verdict"] == "better") or (d["hi"] < 0) == (
                d["verdict"] == "worse"
            )
    # the runs met different settings: the comparison says which
    assert any("request.max_tokens" in n and "16" in n and "32" in n for n in cmp["conditions"])
    assert len(cmp["chart"]["A"]) == len(MODES)
    # seeded: the same runs give the same comparison
    again = json.loads(_cli(["report", str(runs["a"]), str(runs["b"]), "--json"]).stdout)
    assert again == cmp


@pytest.mark.slow
def test_report_text_export_md_and_html(runs: dict[str, Any], tmp_path: Path) -> None:
    a, b = str(runs["a"]), str(runs["b"])
    cmp = C.read_and_compare([a, b])
    text = _cli(["report", a, b, "--text"])
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "COMPARE 2 runs" in out and "B vs A" in out
    for d in cmp["differences"]:
        assert R.diff_cell(d) in out and R.verdict_cell(d, cmp["margin"]) in out
    assert "setting request.max_tokens differs" in out
    assert "draft length k" in out  # the plotext chart
    # HTML: one self-contained file
    html_path = tmp_path / "cmp.html"
    r = _cli(["report", a, b, "--export", "html", "--output", str(html_path)])
    assert r.returncode == 0, r.stderr
    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "</html>" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page.lower() and "@import" not in page
    for d in cmp["differences"]:
        assert R.diff_cell(d) in page and R.verdict_cell(d, cmp["margin"]) in page
    md_path = tmp_path / "cmp.md"
    assert _cli(["report", a, b, "--export", "md", "--output", str(md_path)]).returncode == 0
    md = md_path.read_text()
    assert md.startswith("# Comparison of 2 runs") and "| mode |" in md and "```text" in md


@pytest.mark.slow
def test_report_bad_input_is_one_line_exit_2(runs: dict[str, Any], tmp_path: Path) -> None:
    a = str(runs["a"])
    r = _cli(["report", a, str(tmp_path / "nope")])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "nope" in r.stderr
    dest = tmp_path / "no-such-dir" / "x.html"
    r = _cli(["report", a, a, "--export", "html", "--output", str(dest)])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert not dest.parent.exists()
    r = _cli(["report", a, "--output", str(tmp_path / "x.md")])
    assert r.returncode == 2 and not (tmp_path / "x.md").exists()


@pytest.mark.slow
def test_report_one_run_json_is_its_summary(runs: dict[str, Any]) -> None:
    r = _cli(["report", str(runs["a"]), "--json"])
    assert r.returncode == 0
    assert json.loads(r.stdout) == _summary(runs["a"])


@pytest.mark.slow
async def test_compare_screen_shows_modes_differences_and_chart(runs: dict[str, Any]) -> None:
    from textual.widgets import DataTable

    from halospec_tui.tui.app import CompareApp
    from halospec_tui.tui.widgets.charts import PlotView
    from tests.tui.scripted import wait_until

    cmp = C.read_and_compare([runs["a"], runs["b"]])
    app = CompareApp(cmp)
    async with app.run_test(size=(160, 50)) as pilot:
        dt = app.screen.query_one("#compare-table", DataTable)
        assert dt.row_count == len(MODES)
        assert [str(c.label) for c in dt.columns.values()][-2:] == ["B vs A (95% CI)", "B vs A"]
        plot = app.screen.query_one(PlotView)
        await wait_until(pilot, lambda: "┌" in str(plot.content))
        await pilot.press("q")
    assert app.return_code == 0
    # 80 columns: one column per run (value and rank), the verdict in a word; nothing cut
    app = CompareApp(cmp)
    async with app.run_test(size=(80, 24)) as pilot:
        dt = app.screen.query_one("#compare-table", DataTable)
        assert [str(c.label) for c in dt.columns.values()] == [
            "mode",
            "A tokens/s",
            "B tokens/s",
            "B vs A",
            "B vs A",
        ]
        assert sum(c.get_render_width(dt) for c in dt.columns.values()) <= 78
        await pilot.press("q")


def test_unpaired_difference_on_made_up_rows() -> None:
    """B is 25 % faster on every step: the difference is +25 % and its interval holds it;
    A against itself is 0 and 'same'."""
    from halospec_tui.core.events import StepRow

    def rows(ms: float) -> list[StepRow]:
        return [
            StepRow(
                global_step=i,
                step=i,
                mode="fixed_2",
                phase="steady",
                draft_length=2,
                success=1,
                latency_ms=ms + (i % 5),
                tokens=100,
                round=i,
            )
            for i in range(1, 31)
        ]

    def run(label: str, ms: float) -> C.RunInput:
        from halospec_tui.core.results import summarize_rows

        rs = rows(ms)
        return C.RunInput(label, label, rs, summarize_rows(rs))

    a, b = run("A", 1000.0), run("B", 800.0)
    cmp = C.compare_runs([a, b, run("C", 1000.0)])
    d = {(x["run"], x["mode"]): x for x in cmp["differences"]}
    ab = d[("B", "fixed_2")]
    assert ab["diff"] == pytest.approx(1002 / 802 - 1, rel=1e-3)
    assert ab["lo"] < ab["diff"] < ab["hi"] and ab["lo"] > 0 and ab["verdict"] == "better"
    ac = d[("C", "fixed_2")]
    assert ac["diff"] == 0 and ac["verdict"] == "same"
    assert "A has no profile.toml" in " ".join(cmp["conditions"])
    assert "fixed_2" in R.format_text(cmp) and "<svg" in R.format_html(cmp)
    # on an 80-column terminal every line fits (the table compact, sentences wrapped)
    two = C.compare_runs([a, b])
    narrow = R.format_text(two, columns=80)
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert max(len(line) for line in R.format_text(two).splitlines()) > 80
    assert "124.7 n/r" in narrow  # not ranked: draft length never proven in these rows


def test_original_halospec_csvs_and_three_runs(tmp_path: Path) -> None:
    """The original HaloSpec's CSVs (no profile, no rounds) compare too; a third run is
    compared with the first; a mode missing from a run is said, not guessed."""
    from tests.tui.test_report import original_csv

    a = original_csv(tmp_path / "a.csv")
    b_path = tmp_path / "b.csv"
    lines = a.read_text().splitlines()
    # B: every latency 20 % lower, fixed_8 missing
    out = [lines[0]]
    for line in lines[1:]:
        cells = line.split(",")
        if cells[2] == "fixed_8":
            continue
        cells[6] = str(round(float(cells[6]) * 0.8, 1))
        out.append(",".join(cells))
    b_path.write_text("\n".join(out) + "\n")
    cmp = C.read_and_compare([a, b_path, a])
    assert [r["label"] for r in cmp["runs"]] == ["A", "B", "C"]
    d = {(x["run"], x["mode"]): x for x in cmp["differences"]}
    assert ("B", "fixed_8") not in d and ("C", "fixed_8") in d
    assert d[("B", "fixed_1")]["diff"] == pytest.approx(0.25, abs=2e-3)
    assert d[("B", "fixed_1")]["verdict"] == "better"
    assert d[("C", "fixed_4")]["diff"] == 0 and d[("C", "fixed_4")]["verdict"] == "same"
    notes = " | ".join(cmp["conditions"])
    assert "B has no fixed_8" in notes and "A has no profile.toml" in notes
    text = R.format_text(cmp)
    assert "B vs A" in text and "C vs A" in text
    # no recommendation in an original CSV (k never proven): said, not invented
    assert all(r["recommended"] is None for r in cmp["runs"])


@pytest.mark.slow
async def test_c_on_a_summary_compares_with_another_run(runs: dict[str, Any]) -> None:
    from halospec_tui.tui.app import ReportApp
    from halospec_tui.tui.report import load_report
    from halospec_tui.tui.screens.compare import AddRunScreen, CompareScreen
    from tests.tui.scripted import wait_until

    app = ReportApp(load_report(runs["a"]))
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, AddRunScreen))
        await pilot.press("enter")  # empty: a hint, the dialog stays
        assert isinstance(app.screen, AddRunScreen)
        app.screen.query_one("#add-run-path").value = str(runs["tmp"] / "missing")  # type: ignore[attr-defined]
        await pilot.press("enter")  # unreadable: a notification, no crash
        await wait_until(pilot, lambda: not isinstance(app.screen, AddRunScreen))
        await pilot.pause(0.5)
        assert not isinstance(app.screen, CompareScreen)
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, AddRunScreen))
        app.screen.query_one("#add-run-path").value = str(runs["b"])  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen), timeout=30)
        assert app.screen.cmp["runs"][1]["source"] == str(runs["b"])  # type: ignore[attr-defined]
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, CompareScreen))
        await pilot.press("q")
    assert app.return_code == 0


def test_draft_length_notes_when_runs_disagree_or_k_was_not_applied() -> None:
    def entry(label: str, **verdicts: str) -> dict[str, Any]:
        return {"label": label, "modes": {m: {"verdict": v} for m, v in verdicts.items()}}

    notes = C.draft_notes(
        [
            entry("A", fixed_1="applied", fixed_4="applied", fixed_8="not_applied"),
            entry("B", fixed_1="applied", fixed_4="unknown", fixed_8="not_applied"),
        ]
    )
    assert notes == [
        "draft length of fixed_4: A applied, B unknown",
        "draft length of fixed_8: A not applied, B not applied",
    ]
