"""One answer everywhere: the headless summary, summary.json, `report --text` and the summary
screen of the same run name the same recommendation, tie set and draft-length verdicts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from halospec_tui.tui.app import ReportApp
from halospec_tui.tui.report import load_report
from halospec_tui.tui.widgets.modes_table import ModesTable
from tests.conftest import ROOT, fast_profile
from tests.tui.scripted import wait_until


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "halospec_tui", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


async def test_every_output_names_the_same_recommendation(tmp_path: Path) -> None:
    prof = tmp_path / "p.toml"
    p = fast_profile(modes=["fixed_1", "fixed_3", "fixed_6", "adaptive:heuristic"], steps_fixed=6)
    p.run.steps_adaptive = 6
    p.save(prof)
    run = tmp_path / "run"
    headless = _cli("--headless", "--profile", str(prof), "--out", str(run))
    assert headless.returncode == 0, headless.stderr
    summary = json.loads((run / "summary.json").read_text())
    rec = summary["recommendation"]
    verdicts = {m["mode"]: m["draft_control"]["verdict"] for m in summary["modes"]}
    labels = {m["mode"]: m["confidence"]["label"] for m in summary["modes"]}
    assert rec["mode"] == summary["winner"] and rec["mode"] is not None
    assert set(verdicts.values()) == {"applied"}

    def says_the_same(text: str) -> None:
        assert f"RECOMMENDATION (tok/s, 95 % CI, paired by round): {rec['mode']}" in text
        assert rec["reason"] in text
        for mode, v in verdicts.items():
            line = next(ln for ln in text.splitlines() if ln.lstrip().startswith(mode + " "))
            assert v in line and labels[mode].replace("best", "BEST") in line

    says_the_same(headless.stdout)
    report = _cli("report", "--text", str(run))
    assert report.returncode == 0, report.stderr
    says_the_same(report.stdout)

    app = ReportApp(load_report(run))
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_until(pilot, lambda: bool(app.screen.query("#summary-recommendation")))
        shown = str(app.screen.query_one("#summary-recommendation").render())
        assert rec["mode"] in shown and rec["reason"] in shown.replace("\n", " ")
        table = app.screen.query_one("#summary-modes", ModesTable)
        for mode in verdicts:
            row = [str(c) for c in table.get_row(mode)]
            assert row[0].strip().lstrip("★ ").strip() == mode
            assert ("★" in row[0]) == (mode == rec["mode"])
            assert row[5] == labels[mode].replace("not_ranked", "not ranked")
            assert row[9] == "yes"
