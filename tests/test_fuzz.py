"""Fuzz: generated profiles, argument lists and `report` inputs fed to the real command.

Whatever a user types or points the command at, it ends with 0 or 2 (discover: also 3,
nothing answered), never 1 and never a traceback; a refusal is one line on stderr and leaves
nothing behind (no run folder, no file).

Most examples run `cli.main(argv)` in-process with stdout and stderr captured: the code the
`halospec-tui` entry point runs, minus the interpreter start, so a hundred examples take
seconds. A sample of each kind runs as a child process (`python -m halospec_tui`), and a few
generated valid profiles run a real (tiny) sweep on the embedded engine. Examples are bounded
(`max_examples`) so the whole file stays well under two minutes in CI.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import shutil
import subprocess
import sys
import tempfile
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from halospec_tui import cli
from halospec_tui import profile as P
from halospec_tui.core.results import COLUMNS, HALOSPEC_COLUMNS
from tests.conftest import ROOT
from tests.test_report_input import halospec_csv

FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SAMPLE = settings(FUZZ, max_examples=6)  # child processes: a sample


# --- running the command ------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    code: int
    out: str
    err: str


def run_in_process(argv: list[str], cwd: Path) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), contextlib.chdir(cwd):
        code = cli.main(argv)
    return Outcome(int(code), out.getvalue(), err.getvalue())


def run_child(argv: list[str], cwd: Path) -> Outcome:
    r = subprocess.run(
        [sys.executable, "-m", "halospec_tui", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**_env(), "PYTHONPATH": str(ROOT)},
    )
    return Outcome(r.returncode, r.stdout, r.stderr)


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "HALOSPEC_LOAD"}


def assert_contract(o: Outcome, codes: tuple[int, ...] = (0, 2)) -> None:
    """0 or 2 (never 1), no traceback, a refusal in one line."""
    assert o.code in codes, (o.code, o.err[-2000:])
    assert "Traceback" not in o.err and "Traceback" not in o.out, o.err[-2000:]
    if o.code == 2:
        assert o.err.count("\n") == 1 and o.err.startswith("halospec-tui"), o.err
        assert len(o.err) < 1000, o.err


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A fresh folder per example (hypothesis reuses a test's fixtures across examples)."""
    d = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def listing(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


# --- profiles -------------------------------------------------------------------------------

TINY: dict[str, Any] = {
    "name": "fuzz",
    "run": {
        "modes": ["fixed_1", "fixed_3", "adaptive"],
        "warmup": 0,
        "warmup_interval_s": 0.0,
        "steps_fixed": 2,
        "steps_adaptive": 3,
        "cooldown_s": 0.0,
        "foreign_cpu_limit": 0.0,
    },
    "request": {"model": "halospec-embedded", "max_tokens": 8},
}


def _leaves(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any, Any]]:
    """(key path, type, field) of every setting of the profile schema, controllers included."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _leaves(tp, (*prefix, f.name))
        else:
            out.append(((*prefix, f.name), tp, f))
    return out


LEAVES = _leaves(P.Profile)
VALID_MODES = ["fixed_1", "fixed_2", "fixed_4", "fixed_8", "adaptive", "adaptive:model"]

hostile_scalars = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -1, 0, 10**30, -(10**30), 1e308, -0.0]),
    st.sampled_from(["", " ", "nan", "http://[::1", "ftp://x", "a\x00b", "\n", "fixed_4\n"]),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
hostile_values = st.one_of(
    hostile_scalars,
    st.lists(hostile_scalars, max_size=4),
    st.dictionaries(st.text(max_size=8), hostile_scalars, max_size=3),
)


def valid_value(tp: Any, f: dataclasses.Field[Any]) -> st.SearchStrategy[Any]:
    meta = f.metadata
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    if choices:
        return st.sampled_from(list(choices))
    if tp is bool:
        return st.booleans()
    low = lo if lo is not None else 0
    high = min(hi if hi is not None else low + 100, low + 100)
    if tp is int:
        return st.integers(int(low), int(high))
    if tp is float:
        return st.floats(low, high)
    if tp is str:
        return st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
    return st.just(f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        nxt = data.get(key)
        if not isinstance(nxt, dict):
            nxt = data[key] = {}
        data = nxt
    data[path[-1]] = value


def _copy(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d))


@st.composite
def profiles(draw: st.DrawFn) -> bytes:
    """A profile file's bytes: valid, a valid one with settings in range, one with hostile
    values or unknown keys, TOML of any shape, a valid one with bytes damaged, or garbage."""
    kind = draw(st.sampled_from(["valid", "mutated", "shape", "damaged", "garbage"]))
    data = _copy(TINY)
    if kind in ("valid", "mutated"):
        for path, tp, f in draw(st.lists(st.sampled_from(LEAVES), max_size=4)):
            if path == ("run", "modes"):
                _set(
                    data,
                    path,
                    draw(
                        st.lists(st.sampled_from(VALID_MODES), min_size=1, max_size=3, unique=True)
                    ),
                )
            elif kind == "valid" or draw(st.booleans()):
                _set(data, path, draw(valid_value(tp, f)))
        if kind == "mutated":
            for path, _, _ in draw(st.lists(st.sampled_from(LEAVES), min_size=1, max_size=3)):
                _set(data, path, draw(hostile_values))
            if draw(st.booleans()):
                section = draw(st.sampled_from(["", "run", "backend", "controller.model", "zzz"]))
                _set(
                    data,
                    (*filter(None, section.split(".")), draw(st.text(min_size=1, max_size=10))),
                    1,
                )
    if kind == "shape":
        data = draw(
            st.dictionaries(
                st.sampled_from(["run", "request", "backend", "load", "controller", "name", "x"]),
                st.one_of(
                    hostile_values,
                    st.dictionaries(
                        st.sampled_from([p[-1] for p, _, _ in LEAVES]), hostile_values, max_size=4
                    ),
                ),
                max_size=4,
            )
        )
    if kind == "garbage":
        return draw(
            st.one_of(
                st.binary(max_size=300),
                st.text(max_size=300).map(str.encode),
                st.integers(1, 5000).map(lambda n: ("a = " + "[" * n).encode()),  # nesting
            )
        )
    try:
        text = tomli_w.dumps(data).encode()
    except (TypeError, ValueError):
        text = json.dumps(data, default=str).encode()  # not TOML at all: also an input
    if kind == "damaged":
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 20)))
        text = text[:i] + draw(st.binary(max_size=10)) + text[j:]
    return text


@FUZZ
@given(profiles(), st.sampled_from(["run", "evaluate"]))
def test_profiles_checked_in_one_line(content: bytes, command: str) -> None:
    with scratch() as d:
        path = d / "p.toml"
        path.write_bytes(content)
        o = run_in_process([command, "--check", "--profile", str(path), "--out", str(d / "out")], d)
        assert_contract(o)
        if o.code == 0:
            assert o.out.startswith(command) and " OK: profile " in o.out and o.err == ""
            P.validate(P.load(path))  # what --check passed, the loader passes
        else:
            assert o.out == ""
        assert listing(d) == {"p.toml"}  # --check writes nothing, a refusal writes nothing


@SAMPLE
@given(profiles())
def test_profiles_as_a_child_process(content: bytes) -> None:
    with scratch() as d:
        path = d / "p.toml"
        path.write_bytes(content)
        o = run_child(["--check", "--profile", str(path), "--out", str(d / "out")], d)
        assert_contract(o)
        assert listing(d) == {"p.toml"}


RUNNABLE = [
    (("run", "seed"), st.integers(0, 2**31 - 1)),
    (("run", "order"), st.sampled_from(P.ORDERS)),
    (("run", "metric"), st.sampled_from(P.METRIC_NAMES)),
    (("run", "margin"), st.floats(0, 1)),
    (("run", "modes"), st.lists(st.sampled_from(VALID_MODES), min_size=1, max_size=3, unique=True)),
    (("request", "max_tokens"), st.integers(1, 12)),
    (("request", "temperature"), st.floats(0, 2)),
    (("request", "stream"), st.booleans()),
    (("embedded", "alpha_prose"), st.floats(0, 1)),
    (("controller", "model", "discount"), st.floats(0.5, 1)),
]


@settings(FUZZ, max_examples=3)
@given(
    st.lists(st.sampled_from(RUNNABLE), max_size=4).flatmap(
        lambda keys: st.tuples(*[st.tuples(st.just(k), s) for k, s in keys])
    )
)
def test_valid_profiles_run_a_real_sweep(changes: tuple[tuple[tuple[str, ...], Any], ...]) -> None:
    """Generated valid profiles (tiny step counts) run end to end on the embedded engine."""
    data = _copy(TINY)
    for path, value in changes:
        _set(data, path, value)
    with scratch() as d:
        (d / "p.toml").write_text(tomli_w.dumps(data))
        prof = P.load(d / "p.toml")
        o = run_child(["--headless", "--profile", str(d / "p.toml"), "--out", str(d / "run")], d)
        assert_contract(o, (0,))
        rows = list(csv.DictReader((d / "run" / "results.csv").open()))
        assert len(rows) == prof.total_steps()
        assert "RECOMMENDATION" in o.out


# --- argument lists -------------------------------------------------------------------------

OPTIONS = [
    "--profile", "--out", "--headless", "--check", "--discover", "--pick", "--write",
    "--address", "--probe-timeout", "--runs", "--seed", "--steps", "--text", "--run",
    "--help", "--version", "--bogus", "-x", "--", "-",
]  # fmt: skip
VALUES = [
    "", "0", "1", "3", "-1", "nan", "inf", "1e309", "x", "run", "report", "evaluate",
    "discover", "http://127.0.0.1:1", "http://[::1", "ftp://x", "localhost:1", "a\nb",
    "{good}", "{bad}", "{missing}", "{csv}", "{folder}", "{file}/x",
]  # fmt: skip


@st.composite
def argv_lists(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from([[], ["run"], ["report"], ["evaluate"], ["discover"]]))
    tokens = draw(
        st.lists(st.one_of(st.sampled_from(OPTIONS), st.sampled_from(VALUES)), max_size=7)
    )
    return [*command, *tokens]


def _materialize(argv: list[str], d: Path) -> list[str]:
    """Placeholders to real files, and what keeps an example short: a run or an evaluation
    stops at --check, discover probes only a closed port."""
    (d / "good.toml").write_text(tomli_w.dumps(TINY))
    (d / "bad.toml").write_text("[run]\nwarmup = nan\n")
    (d / "r.csv").write_text(halospec_csv(1))
    (d / "folder").mkdir()
    (d / "file").write_text("")
    names = {"good": d / "good.toml", "bad": d / "bad.toml", "missing": d / "nope.toml"}
    names |= {"csv": d / "r.csv", "folder": d / "folder", "file": d / "file"}
    out = [a.format(**{k: str(v) for k, v in names.items()}) if "{" in a else a for a in argv]
    if argv[:1] == ["discover"]:
        out[1:1] = ["--address", "http://127.0.0.1:1", "--probe-timeout", "0.2"]
    elif "--discover" in out:
        out[:0] = ["--address", "http://127.0.0.1:1", "--probe-timeout", "0.2"]
    elif argv[:1] != ["report"]:
        out.append("--check")
    return out


@FUZZ
@given(argv_lists())
def test_argument_lists(argv: list[str]) -> None:
    with scratch() as d:
        full = _materialize(argv, d)
        before = listing(d)
        o = run_in_process(full, d)
        discover = "--discover" in full or full[:1] == ["discover"]
        assert_contract(o, (0, 2, 3) if discover else (0, 2))
        if o.code == 2 and not discover:
            assert o.out == ""
        assert listing(d) == before  # nothing written: --check, refusals, no server found


@SAMPLE
@given(argv_lists())
def test_argument_lists_as_a_child_process(argv: list[str]) -> None:
    with scratch() as d:
        full = _materialize(argv, d)
        before = listing(d)
        o = run_child(full, d)
        discover = "--discover" in full or full[:1] == ["discover"]
        assert_contract(o, (0, 2, 3) if discover else (0, 2))
        assert listing(d) == before


# --- report inputs ----------------------------------------------------------------------------

cells = st.one_of(
    st.integers(-5, 40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "nan", "inf", "-0", "1e400", "fixed_4", "adaptive", "steady", "x"]),
    st.text(max_size=8),
)


@st.composite
def report_inputs(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "table", "damaged", "joined"]))
    if kind == "bytes":
        return draw(st.binary(max_size=500))
    good = halospec_csv(draw(st.integers(1, 3)), steps=draw(st.integers(1, 4)))
    if kind == "joined":
        return good.encode(draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"])))
    if kind == "damaged":
        raw = good.encode()
        i = draw(st.integers(0, len(raw)))
        j = draw(st.integers(i, min(len(raw), i + 40)))
        return raw[:i] + draw(st.binary(max_size=20)) + raw[j:]
    extra = draw(st.lists(st.sampled_from([*COLUMNS[8:], "bogus", ""]), max_size=4, unique=True))
    header = [*HALOSPEC_COLUMNS, *extra]
    rows = draw(
        st.lists(
            st.lists(cells, min_size=len(header) - 1, max_size=len(header) + 1),
            max_size=12,
        )
    )
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8", "surrogatepass")


def _report_contract(o: Outcome) -> None:
    assert_contract(o)
    if o.code == 2:
        assert o.out == ""
    else:
        assert "RECOMMENDATION" in o.out and o.err.count("\n") <= 1, o.err


@FUZZ
@given(report_inputs())
def test_report_inputs(content: bytes) -> None:
    with scratch() as d:
        (d / "results.csv").write_bytes(content)
        o = run_in_process(["report", "--text", str(d / "results.csv")], d)
        _report_contract(o)
        assert listing(d) == {"results.csv"}


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def summaries(draw: st.DrawFn) -> str:
    """A run folder's summary.json: any JSON, or one shaped like ours with any values."""
    if draw(st.booleans()):
        return json.dumps(draw(json_values))
    mode_entry = st.fixed_dictionaries(
        {"mode": st.sampled_from(["fixed_2", "fixed_4", "adaptive"])},
        optional={
            k: json_values
            for k in ("steps", "avg_ms", "tokens_per_s", "draft_control", "confidence", "label")
        },
    )
    return json.dumps(
        {
            "modes": draw(st.lists(mode_entry, max_size=3)),
            "recommendation": draw(
                st.dictionaries(
                    st.sampled_from(["mode", "k", "why", "label"]), json_values, max_size=3
                )
            ),
            **draw(
                st.dictionaries(
                    st.sampled_from(["backend", "metric", "rounds", "winner"]),
                    json_values,
                    max_size=3,
                )
            ),
        }
    )


@FUZZ
@given(summaries())
def test_report_on_a_folder_with_any_summary_json(summary: str) -> None:
    with scratch() as d:
        (d / "results.csv").write_text(halospec_csv(1))
        (d / "summary.json").write_text(summary)
        o = run_in_process(["report", "--text", str(d)], d)
        _report_contract(o)
        assert o.code == 0  # the rows are fine: whatever summary.json holds, they are reported


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder the real sweep wrote (every column of results.csv, summary.json, the
    profile), once per module, for the damage below."""
    d = tmp_path_factory.mktemp("real")
    (d / "p.toml").write_text(tomli_w.dumps(TINY))
    o = run_child(["--headless", "--profile", str(d / "p.toml"), "--out", str(d / "run")], d)
    assert o.code == 0, o.err
    return d / "run"


@st.composite
def damaged_rows(draw: st.DrawFn, text: str) -> str:
    """results.csv with one kind of damage: a cell replaced, rows cut, dropped, repeated (a
    second run), columns swapped, or the file cut short anywhere."""
    rows = list(csv.reader(io.StringIO(text)))
    kind = draw(st.sampled_from(["cell", "cut", "drop", "repeat", "swap", "truncate"]))
    if kind == "cell":
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(1, len(rows) - 1))
            j = draw(st.integers(0, len(rows[i]) - 1))
            rows[i][j] = draw(cells)
    elif kind == "cut":
        i = draw(st.integers(1, len(rows) - 1))
        rows[i] = rows[i][: draw(st.integers(0, len(rows[i]) - 1))]
    elif kind == "drop":
        del rows[draw(st.integers(1, len(rows) - 1))]
    elif kind == "repeat":
        rows += rows[1 : draw(st.integers(2, len(rows)))]
    elif kind == "swap":
        i, j = draw(st.integers(0, len(rows[0]) - 1)), draw(st.integers(0, len(rows[0]) - 1))
        rows[0][i], rows[0][j] = rows[0][j], rows[0][i]
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    out = buf.getvalue()
    if kind == "truncate":
        out = out[: draw(st.integers(0, len(out)))]
    return out


@settings(FUZZ, max_examples=60)
@given(st.data())
def test_report_on_a_damaged_real_run(real_run: Path, data: st.DataObject) -> None:
    with scratch() as d:
        run = d / "run"
        shutil.copytree(real_run, run)
        text = (real_run / "results.csv").read_text()
        (run / "results.csv").write_text(data.draw(damaged_rows(text)))
        o = run_in_process(["report", "--text", str(run)], d)
        _report_contract(o)


@pytest.mark.parametrize("value", ["9.223372036854776e+18", "-1e300", "18446744073709551616"])
def test_report_refuses_a_whole_number_too_large_to_count(real_run: Path, value: str) -> None:
    """A counter no run reaches (a round of 2^63, found by CI's fuzzing) is one line, exit 2,
    not an overflow deep in the bootstrap."""
    with scratch() as d:
        run = d / "run"
        shutil.copytree(real_run, run)
        rows = list(csv.reader(io.StringIO((real_run / "results.csv").read_text())))
        rows[1][rows[0].index("round")] = value
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        (run / "results.csv").write_text(buf.getvalue())
        o = run_in_process(["report", "--text", str(run)], d)
        _report_contract(o)
        assert o.code == 2 and "round" in o.err and "2^53" in o.err, o.err


@SAMPLE
@given(report_inputs())
def test_report_inputs_as_a_child_process(content: bytes) -> None:
    with scratch() as d:
        (d / "results.csv").write_bytes(content)
        o = run_child(["report", "--text", str(d / "results.csv")], d)
        _report_contract(o)


@pytest.mark.parametrize("n", [1])
def test_fuzz_helpers_see_a_refusal(n: int) -> None:
    """The contract can fail: a refusal that is two lines, or exit 1, is caught."""
    with pytest.raises(AssertionError):
        assert_contract(Outcome(2, "", "halospec-tui: a\nhalospec-tui: b\n"))
    with pytest.raises(AssertionError):
        assert_contract(Outcome(1, "", "halospec-tui: internal error\n"))
    assert_contract(Outcome(2, "", "halospec-tui: one line\n"))
