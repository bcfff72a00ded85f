"""One run, assembled: resolved profile, backend, run folder, writer, load injector, runner.

The CLI's headless mode and the monitor both use a Session, so they run exactly the same
sweep; only the subscribers differ.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from halospec_tui.backends.base import Backend, BackendUnavailable
from halospec_tui.backends.factory import make_backend
from halospec_tui.core.events import EventBus, LoadChanged, Notice
from halospec_tui.core.load import CpuSampler, ForeignCpu, LoadInjector, local_server_pids
from halospec_tui.core.results import ResultsWriter, load_rows, summarize_rows, write_json
from halospec_tui.core.runner import Runner
from halospec_tui.core.scenario import PromptSchedule
from halospec_tui.profile import Profile, ProfileError, load_prompts


def new_run_dir(parent: str | Path) -> Path:
    base = Path(parent) / datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def run_dir_for(profile: Profile, out: str | Path | None) -> Path:
    """The folder a run of `profile` will write into (`--out`, else a new one under
    run.out_dir), checked but not created: ProfileError when it cannot be a run folder."""
    if out is not None:
        run_dir = Path(out)
        if (run_dir / "results.csv").exists():
            raise ProfileError(
                f"--out {run_dir}: already holds results.csv (expected a new or empty folder)"
            )
        where = f"--out {run_dir}"
    else:
        run_dir = new_run_dir(profile.run.out_dir)
        where = f"run.out_dir {profile.run.out_dir}"
    for folder in (run_dir, *run_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ProfileError(f"{where}: {folder} is a file (expected a folder)")
            break
    return run_dir


def preflight(backend: Backend) -> None:
    """The backend's own checks of what its settings name (Backend.preflight), as bad input."""
    try:
        backend.preflight()
    except BackendUnavailable as e:
        raise ProfileError(e.reason) from None


class Session:
    def __init__(
        self, profile: Profile, run_dir: Path, backend: Backend, prompts: PromptSchedule
    ) -> None:
        self.profile = profile
        self.run_dir = run_dir
        self.backend = backend
        backend.set_run_dir(run_dir)  # managed servers keep their logs in the run folder
        self.bus = EventBus()
        self.writer = ResultsWriter(run_dir)
        self.bus.subscribe(self.writer, inline=True)
        self.load = LoadInjector(cores=profile.load.cores, on_change=self._on_load_change)
        self.cpu = CpuSampler()
        self.foreign = ForeignCpu()
        self._foreign_ok = True
        self.runner = Runner(
            profile,
            backend,
            self.bus,
            prompts=prompts,
            run_dir=run_dir,
            load=self.load,
            cpu_percent=self.cpu.sample,
            foreign_cpu=self._foreign_cpu,
        )
        self._closed = False
        self._close_lock = threading.Lock()

    @classmethod
    def create(
        cls, profile: Profile, out: str | Path | None = None, *, backend: Backend | None = None
    ) -> Session:
        """Validate everything a user can get wrong before writing anything."""
        prompts = PromptSchedule(load_prompts(profile))
        run_dir = run_dir_for(profile, out)
        backend = backend or make_backend(profile)
        preflight(backend)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ProfileError(f"--out {run_dir}: cannot create ({e.strerror or e})") from None
        profile.save(run_dir / "profile.toml")
        return cls(profile, run_dir, backend, prompts)

    def _on_load_change(self, on: bool, scheduled: bool, duration_s: float | None) -> None:
        self.bus.publish(
            LoadChanged(on=on, cores=self.load.cores, scheduled=scheduled, duration_s=duration_s)
        )

    def start_backend(self) -> None:
        """Starts or checks the server; raises BackendUnavailable before any mode starts."""
        self.backend.start()
        self._watch_server()

    def _watch_server(self) -> None:
        """A local server the harness did not start is found by its port, so its CPU is not
        taken for someone else's; one it cannot see turns the foreign-CPU check off."""
        if self.profile.run.foreign_cpu_limit <= 0:
            self._foreign_ok = False
            return
        pids = local_server_pids(self.backend.url)
        if pids is None:
            self._foreign_ok = False
            self.bus.publish(
                Notice(
                    "warning",
                    f"foreign CPU is not measured: the server at {self.backend.url} is local "
                    "but its process cannot be seen, so its work would look like another job's",
                )
            )
            return
        self.foreign.watch(pids)

    def _foreign_cpu(self, since: float | None = None) -> float | None:
        return self.foreign.mark(since) if self._foreign_ok else None

    def run(self) -> dict[str, Any]:
        return self.runner.run()

    def final_summary(self) -> dict[str, Any]:
        """The runner's summary, or, if the runner could not finish (stuck in a request),
        one rebuilt from the rows already on disk, so no finished step is lost."""
        if self.runner.summary is not None:
            return self.runner.summary
        rows = load_rows(self.writer.csv_path)
        summary = summarize_rows(
            rows, self.profile, {"cancelled": True, "run_dir": str(self.run_dir)}
        )
        done = {m["mode"]: m for m in self.runner.mode_summaries}
        for m in summary["modes"]:
            if m["mode"] in done and "draft_control" in done[m["mode"]]:
                m["draft_control"] = done[m["mode"]]["draft_control"]
        write_json(self.writer.summary_path, summary)
        return summary

    def close(self) -> None:
        """Stop burners and servers, flush files; idempotent, any thread."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self.runner.cancel()
        with contextlib.suppress(Exception):
            self.load.close()
        with contextlib.suppress(Exception):
            self.backend.close()
        self.bus.close()
        self.writer.close()
