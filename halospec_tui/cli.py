"""Command line: argument parsing, exit codes; monitor or headless.

Exit codes: 0 done, 1 internal error, 2 bad input (profile, arguments, results file),
3 server not answering its health check, 130 interrupted (Ctrl+C / SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from halospec_tui import __version__
from halospec_tui import profile as profile_mod

EXIT_OK, EXIT_ERROR, EXIT_INPUT, EXIT_SERVER, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
STOP_GRACE_S = 5.0


def _fail(msg: str, code: int) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="halospec-tui",
        description="Sweep speculative-decoding draft lengths against a local server and watch it live.",
        epilog="subcommands: 'halospec-tui report RUN_FOLDER_OR_CSV' opens the summary of a finished run; "
        "'halospec-tui evaluate --profile FILE [--runs N]' compares every fixed k and controller.",
    )
    ap.add_argument(
        "--profile", metavar="FILE", help="run profile (TOML); default profiles/default.toml"
    )
    ap.add_argument("--out", metavar="DIR", help="run folder (default: <run.out_dir>/<timestamp>)")
    ap.add_argument(
        "--headless",
        action="store_true",
        help="no monitor: print a line per step, then the summary",
    )
    disc = ap.add_argument_group("finding a server")
    disc.add_argument(
        "--discover",
        action="store_true",
        help="probe the usual local addresses (Lemonade, llama-server, vLLM, LM Studio), list "
        "what answers and write a profile for the one picked",
    )
    disc.add_argument(
        "--pick", type=int, metavar="N", help="with --discover: the server to write a profile for"
    )
    disc.add_argument(
        "--write",
        metavar="FILE",
        help="with --discover: where (default profiles/discovered-KIND.toml)",
    )
    disc.add_argument(
        "--address",
        action="append",
        metavar="URL",
        help="with --discover: probe URL instead (repeatable)",
    )
    disc.add_argument(
        "--probe-timeout",
        type=float,
        default=0.5,
        metavar="S",
        help="with --discover: per probe (0.5 s)",
    )
    ap.add_argument("--version", action="version", version=f"halospec-tui {__version__}")
    return ap


def run_headless(prof: profile_mod.Profile, out: str | None) -> int:
    from halospec_tui.backends.base import BackendUnavailable
    from halospec_tui.headless import HeadlessPrinter, format_summary
    from halospec_tui.session import Session

    session = Session.create(prof, out)
    session.bus.subscribe(HeadlessPrinter())
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
        return _fail(f"server not answering: {err.url} ({err.reason})", EXIT_SERVER)
    print()
    print(format_summary(summary or {}))
    print(f"results: {session.run_dir}")
    if interrupted.is_set():
        print("interrupted: the summary covers the steps that finished", file=sys.stderr)
        return EXIT_INTERRUPTED
    if err is not None:
        if isinstance(err, profile_mod.ProfileError):
            return _fail(str(err), EXIT_INPUT)
        import traceback

        traceback.print_exception(err)
        return _fail(f"internal error: {err.__class__.__name__}: {err}", EXIT_ERROR)
    return EXIT_OK


def cmd_report(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="halospec-tui report", description="Open the summary screen of a finished run."
    )
    ap.add_argument("path", help="run folder or results CSV (ours or the original HaloSpec's)")
    ap.add_argument("--text", action="store_true", help="print the summary table instead")
    args = ap.parse_args(argv)
    from halospec_tui.core.results import ResultsFileError, read_run

    try:
        _, summary = read_run(Path(args.path))
    except ResultsFileError as e:
        return _fail(str(e), EXIT_INPUT)
    if args.text or not sys.stdout.isatty():
        from halospec_tui.headless import format_summary

        print(format_summary(summary))
        return EXIT_OK
    from halospec_tui.tui.app import run_report

    return run_report(Path(args.path))


def cmd_evaluate(argv: list[str]) -> int:
    """Every fixed k and every listed controller on the profile's scenario, N seeded runs."""
    ap = argparse.ArgumentParser(
        prog="halospec-tui evaluate",
        description="Run every fixed k (scenario.fixed_k) and every adaptive mode of the "
        "profile on its scenario, seeded, and compare them per segment (docs/controllers.md).",
    )
    ap.add_argument("--profile", metavar="FILE", help="profile with a [scenario] section")
    ap.add_argument("--out", metavar="DIR", help="folder (default: <run.out_dir>/eval-<time>)")
    ap.add_argument("--runs", type=int, default=1, metavar="N", help="runs, seeds seed..seed+N-1")
    ap.add_argument(
        "--seed", type=int, metavar="S", help="first seed (default: the profile's run.seed)"
    )
    ap.add_argument("--steps", action="store_true", help="print a line per step")
    args = ap.parse_args(argv)
    if args.runs < 1:
        return _fail(f"--runs: expected at least 1, got {args.runs}", EXIT_INPUT)
    if args.seed is not None and not 0 <= args.seed <= 2**31 - args.runs:
        return _fail(
            f"--seed: expected 0..{2**31 - args.runs} (seeds S..S+N-1), got {args.seed}",
            EXIT_INPUT,
        )
    from halospec_tui.core import evaluate as ev_mod
    from halospec_tui.core.events import ModeFinished, Notice
    from halospec_tui.headless import HeadlessPrinter
    from halospec_tui.session import new_run_dir

    try:
        prof = resolve_profile(args.profile)
        if args.seed is not None:
            prof.run.seed = args.seed
        if args.out:
            out = Path(args.out)
        else:
            stamp = new_run_dir(prof.run.out_dir)
            out = stamp.with_name(f"eval-{stamp.name}")
        printer = HeadlessPrinter() if args.steps else None

        def on_event(e: Any) -> None:
            if printer is not None:
                printer(e)
            elif isinstance(e, ModeFinished):
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

        def on_term(signum: int, frame: Any) -> None:  # SIGTERM as Ctrl+C: stop cleanly
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGTERM, on_term)
        try:
            result = ev_mod.run_evaluation(prof, out, args.runs, on_event=on_event)
        finally:
            signal.signal(signal.SIGTERM, old)
    except profile_mod.ProfileError as e:
        return _fail(str(e), EXIT_INPUT)
    if not result.get("runs"):
        return _fail("no evaluation run finished", EXIT_ERROR)
    print()
    print(ev_mod.format_evaluation(result))
    print()
    print(ev_mod.k_tracking_plots(result))
    print(f"evaluation: {out / 'evaluation.json'} (k-tracking plots: run-*/k_tracking.txt)")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] == "report":
            return cmd_report(argv[1:])
        if argv and argv[0] == "evaluate":
            return cmd_evaluate(argv[1:])
        args = build_parser().parse_args(argv)
        if args.discover:
            from halospec_tui.backends.discover import run_cli

            return run_cli(
                addresses=args.address, pick=args.pick, write=args.write, timeout=args.probe_timeout
            )
        try:
            prof = resolve_profile(args.profile)
            if args.headless:
                return run_headless(prof, args.out)
            from halospec_tui.tui.app import run_monitor

            return run_monitor(prof, args.out)
        except profile_mod.ProfileError as e:
            return _fail(str(e), EXIT_INPUT)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        from halospec_tui.core import procs

        with contextlib.suppress(Exception):
            procs.stop_all()


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
