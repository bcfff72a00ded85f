"""Every class of bad input a user can hand the command, tried for real, counted per class.

    python benchmarks/bad_inputs.py            # in-process: cli.main(argv), seconds
    python benchmarks/bad_inputs.py --child    # each case as `python -m halospec_tui ...`
    python benchmarks/bad_inputs.py --list     # and every case's one line

Each case is a profile, a file or an argument list; the real command runs it (`run --check`
for profiles, so that a profile that passes stops before starting anything; `--headless`
where the check needs the run itself) and the outcome is judged: the exit status, whether
stderr is one line, whether a traceback appeared, whether anything was written. The table it
prints is docs/reliability.md's bad-input table. Run from the repository root.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import io
import subprocess
import sys
import tempfile
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tomli_w  # noqa: E402

from halospec_tui import cli  # noqa: E402
from halospec_tui import profile as P  # noqa: E402
from halospec_tui.core.results import HALOSPEC_COLUMNS  # noqa: E402


@dataclasses.dataclass
class Case:
    klass: str
    name: str
    files: dict[str, bytes]  # written into the case's folder first
    argv: list[str]  # {d} is the case's folder
    expect: tuple[int, ...] = (2,)


@dataclasses.dataclass
class Outcome:
    code: int
    out: str
    err: str
    written: set[str]


def leaves(
    cls: type = P.Profile, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from leaves(tp, (*prefix, f.name))
        else:
            yield (*prefix, f.name), tp, f


def nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {path[-1]: value}
    for key in reversed(path[:-1]):
        out = {key: out}
    return out


def toml(data: dict[str, Any]) -> bytes:
    return tomli_w.dumps(data).encode()


def profile_case(klass: str, name: str, content: bytes | dict[str, Any], **kw: Any) -> Case:
    body = toml(content) if isinstance(content, dict) else content
    return Case(
        klass,
        name,
        {"p.toml": body},
        ["run", "--check", "--profile", "{d}/p.toml", "--out", "{d}/out"],
        **kw,
    )


def profile_cases() -> list[Case]:
    cases: list[Case] = []
    wrong = {str: 5, int: "five", float: "fast", bool: 1}
    for path, tp, f in leaves():
        key = ".".join(path)
        bad = wrong.get(tp, "not a list")
        cases.append(profile_case("profile: a value of the wrong type", key, nest(path, bad)))
        lo, hi, choices = (f.metadata.get(m) for m in ("lo", "hi", "choices"))
        if tp in (int, float) and lo is not None:
            cases.append(
                profile_case(
                    "profile: a number out of range", f"{key} < {lo:g}", nest(path, tp(lo - 1))
                )
            )
        if tp in (int, float) and hi is not None:
            cases.append(
                profile_case(
                    "profile: a number out of range", f"{key} > {hi:g}", nest(path, tp(hi + 1))
                )
            )
        if tp is float:
            for v in ("nan", "inf", "-inf"):
                cases.append(
                    profile_case(
                        "profile: nan or inf",
                        f"{key} = {v}",
                        toml(nest(path, 0.5)).replace(b"0.5", v.encode()),
                    )
                )
        if choices:
            cases.append(profile_case("profile: not one of the choices", key, nest(path, "bogus")))
        if tp is str:
            cases.append(
                profile_case("profile: a NUL character in text", key, nest(path, "a\x00b"))
            )
    for url in (
        "http://[::1", "http://[zz::1]:80", "http://:8080", "ftp://host", "localhost:8080",
        "http://host:99999", "http://host:0", "http://host:-1", "http://host:abc", "http://my host",
        "http://host/?a=1", "http://host/#x", "http://", "//host:80", "file:///etc/passwd",
    ):  # fmt: skip
        cases.append(
            profile_case(
                "profile: a malformed backend.url", url, {"backend": {"kind": "openai", "url": url}}
            )
        )
    structure = {
        "unknown key": b"[run]\nwarmups = 3\n",
        "unknown section": b"[nonsense]\nx = 1\n",
        "unknown controller table": b"[controller.magic]\nx = 1\n",
        "a quoted key with a newline": b'[run]\n"a\\nb" = 1\n',
        "duplicate key": b"[run]\nwarmup = 1\nwarmup = 2\n",
        "duplicate table": b"[run]\n[run]\n",
        "a table where a value goes": b"[run.warmup]\nx = 1\n",
        "a value where a table goes": b"run = 3\n",
        "an array of tables": b"[[run]]\nwarmup = 1\n",
        "a date": b"[run]\nwarmup = 1979-05-27\n",
        "not TOML": b"this is = = not toml\n",
        "nested too deeply": b"a = " + b"[" * 100_000,
        "JSON": b'{"run": {"warmup": 1}}',
    }
    for name, body in structure.items():
        cases.append(profile_case("profile: structure (keys, tables, syntax)", name, body))
    combos = {
        "run.modes empty": {"run": {"modes": []}},
        "run.modes twice": {"run": {"modes": ["fixed_2", "fixed_2"]}},
        "run.modes fixed_0": {"run": {"modes": ["fixed_0"]}},
        "run.modes fixed_65": {"run": {"modes": ["fixed_65"]}},
        "run.modes unknown controller": {"run": {"modes": ["adaptive:magic"]}},
        "run.modes with a newline": {"run": {"modes": ["fixed_4\n"]}},
        "run.out_dir empty": {"run": {"out_dir": ""}},
        "load.modes typo": {"load": {"modes": ["adaptve"]}},
        "draft channel the kind lacks": {"backend": {"kind": "vllm", "draft_channel": "pool"}},
        "controller k_min > k_max": {"controller": {"latency": {"k_min": 9}}},
        "acceptance thresholds out of order": {"controller": {"acceptance": {"up": 0.9}}},
        "scenario shift_steps count": {"scenario": {"categories": ["math", "code"]}},
        "scenario shift_steps without categories": {"scenario": {"shift_steps": [3]}},
        "scenario shift_steps decreasing": {
            "scenario": {"categories": ["math", "code", "json"], "shift_steps": [5, 3]}
        },
        "scenario load half set": {"scenario": {"load_start_step": 3}},
        "scenario fixed_k twice": {"scenario": {"fixed_k": [2, 2]}},
        "scenario kind vs shape": {"scenario": {"kind": "content_shift"}},
        "scenario category unknown": {"scenario": {"categories": ["poetry"]}},
    }
    for name, data in combos.items():
        cases.append(profile_case("profile: settings that contradict each other", name, data))
    return cases


def file_cases() -> list[Case]:
    def run(extra: list[str]) -> list[str]:
        return ["run", "--check", *extra, "--out", "{d}/out"]

    cases = [
        Case("profile file: not a profile", "missing", {}, run(["--profile", "{d}/nope.toml"])),
        Case("profile file: not a profile", "a folder", {}, run(["--profile", "{d}"])),
        Case(
            "profile file: not a profile",
            "binary",
            {"p.toml": b"\x7fELF\x02\x01\x00\x00"},
            run(["--profile", "{d}/p.toml"]),
        ),
        Case(
            "profile file: not a profile",
            "not UTF-8",
            {"p.toml": "name = 'caf\xe9'\n".encode("latin-1")},
            run(["--profile", "{d}/p.toml"]),
        ),
        Case("profile file: not a profile", "/dev/zero", {}, run(["--profile", "/dev/zero"])),
        Case(
            "profile file: not a profile",
            "2 MiB",
            {"p.toml": b"#" * (2 << 20)},
            run(["--profile", "{d}/p.toml"]),
        ),
    ]
    suites = {
        "missing": None,
        "binary": b"\x00\x01\x02",
        "not UTF-8": '{"prompt": "caf\xe9"}\n'.encode("latin-1"),
        "not JSON": b'{"prompt": "a"\n',
        "no prompt": b'{"id": "a"}\n',
        "unknown category": b'{"prompt": "a", "category": "poetry"}\n',
        "empty": b"\n\n",
        "nested too deeply": b"[" * 100_000 + b"\n",
        "unknown builtin": "builtin",
    }
    for name, body in suites.items():
        spec = "builtin:nope" if body == "builtin" else "{d}/s.jsonl"
        files = {"p.toml": f"[request]\nprompts_file = '{spec}'\n".encode()}
        if isinstance(body, bytes):
            files["s.jsonl"] = body
        cases.append(
            Case(
                "prompt suite (request.prompts_file)", name, files, run(["--profile", "{d}/p.toml"])
            )
        )
    cases += [
        Case(
            "run folder (--out, run.out_dir)",
            "--out holds results.csv",
            {"out/results.csv": b"x"},
            ["run", "--headless", "--profile", "{d}/p.toml", "--out", "{d}/out"],
        ),
        Case(
            "run folder (--out, run.out_dir)",
            "--out under a file",
            {"f": b""},
            ["run", "--check", "--out", "{d}/f/out"],
        ),
        Case(
            "run folder (--out, run.out_dir)",
            "run.out_dir under a file",
            {"f": b"", "p.toml": b"[run]\nout_dir = 'f/runs'\n"},
            ["run", "--check", "--profile", "{d}/p.toml"],
        ),
        Case(
            "run folder (--out, run.out_dir)",
            "evaluate --out a file",
            {"f": b""},
            ["evaluate", "--check", "--out", "{d}/f"],
        ),
    ]
    cases[-4].files["p.toml"] = b"[run]\nsteps_fixed = 1\n"
    managed = {
        "binary missing": "binary = '{d}/nope'",
        "binary a folder": "binary = '{d}'",
        "model missing": "binary = '/bin/true'\nmodel_path = '{d}/m.gguf'",
        "draft model missing": "binary = '/bin/true'\nmodel_path = '/etc/hostname'\ndraft_model_path = '{d}/d.gguf'",
    }
    for name, setting in managed.items():
        cases.append(
            Case(
                "llamacpp-managed paths (backend.binary, model_path)",
                name,
                {"p.toml": f"[backend]\nkind = 'llamacpp-managed'\n{setting}\n".encode()},
                ["--headless", "--profile", "{d}/p.toml", "--out", "{d}/out"],
            )
        )
    return cases


def option_cases() -> list[Case]:
    argvs = {
        "a discover option without discover": [
            ["--pick", "1"],
            ["--write", "x.toml"],
            ["--address", "http://127.0.0.1:9"],
            ["--probe-timeout", "2"],
            ["--pick", "1", "run"],
        ],
        "an option its command does not read": [
            ["--headless", "report", "x"],
            ["--profile", "p.toml", "report", "x"],
            ["--headless", "evaluate"],
            ["--discover", "run"],
            ["--discover", "--headless"],
            ["--check", "report", "x"],
            ["--out", "o", "--discover"],
        ],
        "an empty path": [
            ["--out", ""],
            ["run", "--out", ""],
            ["evaluate", "--out", ""],
            ["--profile", ""],
            ["discover", "--write", ""],
        ],
        "a bad number": [
            ["--discover", "--probe-timeout", "-1"],
            ["--discover", "--probe-timeout", "nan"],
            ["--discover", "--probe-timeout", "inf"],
            ["--discover", "--probe-timeout", "0"],
            ["evaluate", "--runs", "0"],
            ["evaluate", "--runs", "x"],
            ["evaluate", "--seed", "-1"],
            ["report", "--run", "x", "f.csv"],
            ["--discover", "--pick", "x"],
        ],
        "a malformed --address": [
            ["--discover", "--address", "ftp://x"],
            ["--discover", "--address", "http://[::1"],
            ["--discover", "--address", "localhost:1"],
        ],
        "argparse: unknown, missing, misplaced": [
            ["--bogus"],
            ["frob"],
            ["report"],
            ["--headless", "--profile"],
            ["run", "a\nb"],
            ["--", "x"],
        ],
    }
    return [
        Case(f"options: {k}", " ".join(a) or "(none)", {}, a) for k, v in argvs.items() for a in v
    ]


def report_cases() -> list[Case]:
    header = ",".join(HALOSPEC_COLUMNS)
    good = "1,1,fixed_2,steady,2,1,120.5,32"
    bodies = {
        "empty": b"",
        "blank lines only": b"\n \n",
        "binary": b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)),
        "not UTF-8": f"{header}\n1,1,fixed_2,st\xe9ady,2,1,120,32\n".encode("latin-1"),
        "UTF-16": f"{header}\n{good}\n".encode("utf-16"),
        "a short row": f"{header}\n1,1,fixed_2,steady\n".encode(),
        "a long row": f"{header}\n{good},9\n".encode(),
        "an unknown column": f"{header},bogus\n{good},x\n".encode(),
        "a column twice": f"{header},error,error\n{good},a,b\n".encode(),
        "nan in a number column": f"{header}\n1,1,fixed_2,steady,2,1,nan,32\n".encode(),
        "inf in a number column": f"{header}\n1,1,fixed_2,steady,2,1,120,inf\n".encode(),
        "a fraction in an integer column": f"{header}\n1,1,fixed_2,steady,2.5,1,120,32\n".encode(),
        "text in a number column": f"{header}\n1,1,fixed_2,steady,two,1,120,32\n".encode(),
        "an empty required value": f"{header}\n1,1,fixed_2,steady,,1,120,32\n".encode(),
        "not our header": b"a,b,c\n1,2,3\n",
        "a field over 128 KiB": f'{header}\n1,1,fixed_2,steady,2,1,120,"{"x" * 200_000}\n'.encode(),
        "JSON": b'{"modes": []}',
        "two runs joined": (f"{header}\n{good}\n2,2,fixed_2,steady,2,1,121,32\n{good}\n").encode(),
    }
    cases = [
        Case("report: a CSV it cannot read", n, {"r.csv": b}, ["report", "--text", "{d}/r.csv"])
        for n, b in bodies.items()
    ]
    cases[-1].klass = "report: several runs in one CSV"
    cases.append(
        Case(
            "report: several runs in one CSV",
            "--run 3 of 2",
            {"r.csv": bodies["two runs joined"]},
            ["report", "--text", "--run", "3", "{d}/r.csv"],
        )
    )
    cases.append(
        Case(
            "report: several runs in one CSV",
            "--run 2 of 2",
            {"r.csv": bodies["two runs joined"]},
            ["report", "--text", "--run", "2", "{d}/r.csv"],
            expect=(0,),
        )
    )
    cases += [
        Case("report: not a file", "missing", {}, ["report", "--text", "{d}/nope.csv"]),
        Case("report: not a file", "a folder without results.csv", {}, ["report", "--text", "{d}"]),
        Case("report: not a file", "/dev/zero", {}, ["report", "--text", "/dev/zero"]),
    ]
    csv_ok = f"{header}\n{good}\n2,2,fixed_2,steady,2,1,121,32\n".encode()
    for name, js in {
        "not JSON": b"not json",
        "a list": b"[1, 2]",
        "modes not a list": b'{"modes": 5, "recommendation": 1}',
        "recommendation not a table": b'{"modes": [{"mode": "fixed_2"}], "recommendation": "x"}',
        "a number that is text": b'{"modes": [{"mode": "fixed_2", "avg_ms": "x"}], "recommendation": {"mode": 3}}',
        "nested too deeply": b"[" * 100_000,
    }.items():
        cases.append(
            Case(
                "report: a damaged summary.json (read from the rows)",
                name,
                {"run/results.csv": csv_ok, "run/summary.json": js},
                ["report", "--text", "{d}/run"],
                expect=(0,),
            )
        )
    return cases


def run_case(case: Case, child: bool) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="bad-input-") as tmp:
        d = Path(tmp)
        for name, body in case.files.items():
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            (d / name).write_bytes(body.replace(b"{d}", str(d).encode()))
        before = {str(p.relative_to(d)) for p in d.rglob("*")}
        argv = [a.replace("{d}", str(d)) for a in case.argv]
        if child:
            r = subprocess.run(
                [sys.executable, "-m", "halospec_tui", *argv],
                cwd=d,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=120,
                stdin=subprocess.DEVNULL,
                env=_env(),
            )
            code, out, err = r.returncode, r.stdout, r.stderr
        else:
            o, e = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e), contextlib.chdir(d):
                try:
                    code = int(cli.main(argv))
                except BaseException as exc:  # noqa: BLE001 - an escape is the finding
                    code = 1
                    e.write(f"Traceback (escaped: {exc.__class__.__name__}: {exc})\n")
            out, err = o.getvalue(), e.getvalue()
        after = {str(p.relative_to(d)) for p in d.rglob("*")}
        return Outcome(code, out, err, after - before)


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}


def judge(case: Case, o: Outcome) -> str:
    """'ok' when it behaved as promised, else what went wrong."""
    problems = []
    if o.code not in case.expect:
        problems.append(f"exit {o.code}")
    if "Traceback" in o.err or "Traceback" in o.out:
        problems.append("traceback")
    if o.code == 2 and o.err.count("\n") != 1:
        problems.append(f"{o.err.count(chr(10))} lines")
    if o.code == 2 and o.written:
        problems.append(f"wrote {sorted(o.written)}")
    return ", ".join(problems) or "ok"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", action="store_true", help="each case as a child process")
    ap.add_argument("--list", action="store_true", help="print every case's outcome")
    args = ap.parse_args()
    cases = profile_cases() + file_cases() + option_cases() + report_cases()
    per: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    examples: dict[str, str] = {}
    for case in cases:
        o = run_case(case, args.child)
        verdict = judge(case, o)
        per[case.klass][verdict] += 1
        first = (o.err.strip().splitlines() or [""])[0]
        examples.setdefault(case.klass, first if o.code == 2 else examples.get(case.klass, ""))
        if args.list or verdict != "ok":
            print(f"{verdict:>6}  {case.klass}: {case.name!r}: exit {o.code}: {first[:160]}")
    print()
    print("| class | cases | as promised | otherwise |")
    print("|---|---|---|---|")
    for klass, counts in per.items():
        other = ", ".join(f"{n} {v}" for v, n in counts.items() if v != "ok") or "-"
        print(f"| {klass} | {sum(counts.values())} | {counts['ok']} | {other} |")
    total = sum(sum(c.values()) for c in per.values())
    ok = sum(c["ok"] for c in per.values())
    print(
        f"\n{ok} of {total} cases as promised ({'child processes' if args.child else 'in-process'})"
    )
    return 0 if ok == total else 1


if __name__ == "__main__":
    sys.exit(main())
