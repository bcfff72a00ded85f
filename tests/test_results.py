"""Results files: HaloSpec's columns first, rows on disk at once, summaries rebuilt from CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from halospec_tui.core.events import ModeFinished, StepResult, StepRow
from halospec_tui.core.results import (
    COLUMNS,
    HALOSPEC_COLUMNS,
    ResultsFileError,
    ResultsWriter,
    export,
    load_rows,
    summarize_rows,
)


def _row(i: int, mode: str = "fixed_2", lat: float = 100.0, **kw: object) -> StepRow:
    base = dict(
        global_step=i,
        step=i,
        mode=mode,
        phase="steady",
        draft_length=2,
        success=1,
        latency_ms=lat,
        tokens=64,
        draft_n=40,
        draft_n_accepted=30,
        observed_k=1.9,
        acceptance=0.75,
        controller_reason="fixed",
    )
    base.update(kw)
    return StepRow(**base)  # type: ignore[arg-type]


def test_header_is_halospecs_eight_then_ours(tmp_path: Path) -> None:
    w = ResultsWriter(tmp_path)
    w.close()
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:8] == HALOSPEC_COLUMNS
    for col in (
        "timestamp",
        "prompt_id",
        "category",
        "draft_n",
        "draft_n_accepted",
        "acceptance",
        "observed_k",
        "prompt_ms",
        "predicted_ms",
        "tokens_per_s",
        "cpu_percent",
        "ema_ms",
        "low_thr_ms",
        "high_thr_ms",
        "controller_reason",
        "error",
    ):
        assert col in header


def test_each_row_is_on_disk_before_the_next(tmp_path: Path) -> None:
    w = ResultsWriter(tmp_path)
    w(StepResult(row=_row(1), text="hello"))
    # read while the writer is still open: the row must already be flushed
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 1 and rows[0]["latency_ms"] == "100" and rows[0]["tokens"] == "64"
    line = json.loads((tmp_path / "responses.jsonl").read_text().splitlines()[0])
    assert line["text"] == "hello" and line["timings"]["draft_n"] == 40
    w.close()


def test_debug_json_keeps_full_reply(tmp_path: Path) -> None:
    w = ResultsWriter(tmp_path, debug_json=True)
    w(StepResult(row=_row(1), text="x", reply_json={"id": "abc", "choices": []}))
    w.close()
    assert json.loads((tmp_path / "responses.jsonl").read_text())["reply"]["id"] == "abc"


def test_summary_written_after_each_mode(tmp_path: Path) -> None:
    w = ResultsWriter(tmp_path)
    w(
        ModeFinished(
            mode="fixed_2",
            summary={"mode": "fixed_2"},
            run_summary={"modes": [{"mode": "fixed_2"}]},
        )
    )
    assert json.loads((tmp_path / "summary.json").read_text())["modes"][0]["mode"] == "fixed_2"
    w.close()


def test_load_rows_round_trip_and_summary(tmp_path: Path) -> None:
    w = ResultsWriter(tmp_path)
    for i, lat in enumerate([100.0, 200.0, 300.0, 400.0], 1):
        w(StepResult(row=_row(i, lat=lat)))
    w(StepResult(row=_row(5, success=0, latency_ms=0.0, tokens=0, error="timeout")))
    w.close()
    rows = load_rows(tmp_path / "results.csv")
    assert [r.latency_ms for r in rows] == [100.0, 200.0, 300.0, 400.0, 0.0]
    assert rows[4].error == "timeout" and rows[0].draft_n == 40
    s = summarize_rows(rows)
    m = s["modes"][0]
    assert (m["steps"], m["failures"], m["median_ms"], m["p95_ms"]) == (5, 1, 200.0, 400.0)
    assert s["winner"] == "fixed_2"


def test_original_halospec_csv_is_readable(tmp_path: Path) -> None:
    p = tmp_path / "results_phase0.csv"
    p.write_text(
        "global_step,step,mode,phase,draft_length,success,latency_ms,tokens\n"
        "1,1,fixed_1,steady,1,1,3500,64\n2,2,fixed_1,steady,1,1,3600,64\n"
        "3,1,adaptive,steady,4,1,3400,64\n4,2,adaptive,load,5,0,0,0\n"
    )
    rows = load_rows(p)
    s = summarize_rows(rows)
    assert [m["mode"] for m in s["modes"]] == ["fixed_1", "adaptive"]
    assert s["modes"][1]["phases"]["load"]["failures"] == 1


def test_not_a_results_file(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(ResultsFileError, match="expected a results CSV"):
        load_rows(p)


def test_export_mid_run_copies_rows_so_far(tmp_path: Path) -> None:
    run = tmp_path / "run"
    w = ResultsWriter(run)
    w(StepResult(row=_row(1)))
    w(StepResult(row=_row(2, lat=150.0)))
    csv_out, json_out = export(run, tmp_path / "exp")
    w(StepResult(row=_row(3)))  # the run goes on; the export is a snapshot
    w.close()
    assert len(csv_out.read_text().splitlines()) == 3
    s = json.loads(json_out.read_text())
    assert s["partial"] is True and s["modes"][0]["steps"] == 2
    assert csv_out.read_text().splitlines()[0].split(",") == COLUMNS
