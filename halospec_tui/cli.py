"""Command line: subcommands, their arguments and exit codes; the monitor or headless output.

    halospec-tui [run] [--profile FILE] [--out DIR] [--headless]   the sweep (the default)
        [--json] [--url U] [--model M] [--modes A,B] [--steps N] [--max-tokens N]
        [--set section.key=VALUE ...]                                 overrides, for one run
    halospec-tui report RUN_FOLDER_OR_CSV [--text|--json]           a finished run's summary
    halospec-tui report A B [C ...] [--text|--json|--export md|html] runs compared
    halospec-tui evaluate --profile FILE [--runs N] [--seed S]      every fixed k vs controllers
    halospec-tui discover [--address URL] [--pick N --write FILE]   find local servers
                                                                    (also: --discover)

Exit codes: halospec_tui/exitcodes.py (0 done, 1 internal error, 2 bad input, 3 server not
answering its health check, 130 interrupted).
"""

from __future__ import annotations

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
from typing import Any

from halospec_tui import __version__
from halospec_tui import profile as profile_mod
from halospec_tui.backends import discover as disc
from halospec_tui.backends.base import BackendUnavailable
from halospec_tui.core.compare import read_and_compare
from halospec_tui.core.compare_report import EXPORTS
from halospec_tui.core.compare_report import format_text as format_compare_text
from halospec_tui.core.evaluation.text import format_evaluation, k_tracking_plots
from halospec_tui.core.events import Event, ModeFinished, Notice
from halospec_tui.core.results import ResultsFileError, read_run
from halospec_tui.discovered_profile import write_profile
from halospec_tui.evaluation import evaluation_profile, run_evaluation
from halospec_tui.exitcodes import ExitCode
from halospec_tui.headless import HeadlessPrinter, ProgressLine, format_summary
from halospec_tui.procs import children
from halospec_tui.session import Session, new_run_dir

STOP_GRACE_S = 5.0


def _fail(msg: str, code: ExitCode) -> ExitCode:
    print(f"halospec-tui: {msg}", file=sys.stderr)
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
# Options the top level shares with a subcommand (`halospec-tui --profile X` is `run`, and
# `--discover` is `discover`) default to SUPPRESS in the subcommand, so that a value given
# before the subcommand's name is not overwritten by the subcommand's default.


def _keep(default: Any, suppress: bool) -> Any:
    return argparse.SUPPRESS if suppress else default


def _run_options(ap: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    ap.add_argument(
        "--profile",
        metavar="FILE",
        default=_keep(None, suppress),
        help="run profile (TOML); default profiles/default.toml",
    )
    ap.add_argument(
        "--out",
        metavar="DIR",
        default=_keep(None, suppress),
        help="run folder (default: <run.out_dir>/<timestamp>)",
    )
    ap.add_argument(
        "--headless",
        action="store_true",
        default=_keep(False, suppress),
        help="no monitor: print a line per step, then the summary",
    )
    ap.add_argument(
        "--json",
        action="store_true",
        default=_keep(False, suppress),
        help="headless, and print the summary as JSON on stdout (every other line on stderr)",
    )
    _override_options(ap, suppress=suppress)


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
        default=_keep(None, suppress),
        help="where (default profiles/discovered-KIND.toml)",
    )
    ap.add_argument(
        "--address",
        action="append",
        metavar="URL",
        default=_keep(None, suppress),
        help="probe URL instead (repeatable)",
    )
    ap.add_argument(
        "--probe-timeout",
        type=float,
        metavar="S",
        default=_keep(disc.PROBE_TIMEOUT_S, suppress),
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


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
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
        default=argparse.SUPPRESS,
        help="profile with a [scenario] section",
    )
    evaluate.add_argument(
        "--out",
        metavar="DIR",
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
    _override_options(evaluate, sweep=False)

    discover = commands.add_parser(
        "discover",
        help="find local inference servers and write a profile for one",
        description="Probe the usual local addresses (Lemonade, llama-server, vLLM, LM Studio), "
        "list what answers and write a profile for the one picked.",
    )
    _discover_options(discover, suppress=True)
    return ap


# --- run -------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    try:
        prof = resolve_profile(args.profile)
        prof = profile_mod.with_overrides(prof, overrides_from(args, prof))
        if args.headless or args.json:
            return run_headless(prof, args.out, json_out=args.json)
        from halospec_tui.tui.app import run_monitor  # textual: only for the monitor

        return run_monitor(prof, args.out)
    except profile_mod.ProfileError as e:
        return _fail(str(e), ExitCode.INPUT)


def run_headless(prof: profile_mod.Profile, out: str | None, *, json_out: bool = False) -> int:
    """The sweep without the monitor. `json_out`: the summary JSON is the only thing on
    stdout (for scripts: `halospec-tui run --json | jq .winner`); the lines go to stderr."""
    session = Session.create(prof, out)
    human = sys.stderr if json_out else sys.stdout
    session.bus.subscribe(HeadlessPrinter(human))
    interrupted = threading.Event()
    outcome: dict[str, Any] = {}

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
        while worker.is_alive() and not interrupted.is_set():
            worker.join(0.2)
        if interrupted.is_set():
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
    if args.output and not args.export:
        return _fail("--output: only with --export md|html", ExitCode.INPUT)
    paths = [Path(p) for p in args.paths]
    try:
        if len(paths) == 1 and not args.export:
            _, summary = read_run(paths[0])
        else:
            cmp = read_and_compare(paths)
    except ResultsFileError as e:
        return _fail(str(e), ExitCode.INPUT)
    if len(paths) == 1 and not args.export:
        if args.json:
            print(json_text(summary))
            return ExitCode.OK
        if args.text or not sys.stdout.isatty():
            print(format_summary(summary))
            return ExitCode.OK
        from halospec_tui.tui.app import run_report  # textual: only for the screen

        return run_report(paths[0])
    if args.export:
        return export_report(cmp, args.export, args.output)
    if args.json:
        print(json_text(cmp))
        return ExitCode.OK
    if args.text or not sys.stdout.isatty():
        # on a terminal, fit its width; in a pipe or a file, the full table
        columns = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        print(format_compare_text(cmp, columns=columns))
        return ExitCode.OK
    from halospec_tui.tui.app import run_compare  # textual: only for the screen

    return run_compare(cmp)


def export_report(cmp: dict[str, Any], kind: str, output: str | None) -> int:
    """Write the comparison as md or html, atomically (a failed write leaves nothing)."""
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
        inner = HeadlessPrinter() if args.steps else _print_mode_lines
        total = evaluation_profile(prof).total_steps() * args.runs
        # one updating line on a terminal; with --steps (a line per step) plain lines instead
        progress = ProgressLine(total, inner, tty=False if args.steps else None)

        def on_term(signum: int, frame: Any) -> None:  # SIGTERM as Ctrl+C: stop cleanly
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGTERM, on_term)
        try:
            result = run_evaluation(prof, out, args.runs, on_event=progress, log=progress.say)
        finally:
            progress.finish()
            signal.signal(signal.SIGTERM, old)
    except profile_mod.ProfileError as e:
        return _fail(str(e), ExitCode.INPUT)
    if not result.get("runs"):
        return _fail("no evaluation run finished", ExitCode.ERROR)
    print()
    print(format_evaluation(result))
    print()
    print(k_tracking_plots(result))
    print(f"evaluation: {out / 'evaluation.json'} (k-tracking plots: run-*/k_tracking.txt)")
    return ExitCode.OK


def _print_mode_lines(e: Event) -> None:
    """evaluate without --steps: a line per finished mode, and errors."""
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
    return run_discover(
        addresses=args.address, pick=args.pick, write=args.write, timeout=args.probe_timeout
    )


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
    if pick is None and sys.stdin.isatty() and sys.stdout.isatty():
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
    dest = write_profile(found[pick - 1], write)
    print(f"wrote {dest}; run it with: halospec-tui --profile {dest}")
    return ExitCode.OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "report": cmd_report,
    "evaluate": cmd_evaluate,
    "discover": cmd_discover,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        command = args.command or ("discover" if args.discover else "run")
        return COMMANDS[command](args)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
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
