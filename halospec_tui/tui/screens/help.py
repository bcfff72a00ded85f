"""`?`: what each key does and what each pane shows."""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# HaloSpec monitor

| key | what it does |
|---|---|
| `l` | CPU load on/off now, in any mode (rows get the load / recovery phases) |
| `p` | pause / resume: no new step starts while paused |
| `u` | with rounds: go on past the planned rounds until the recommendation is decided |
| `f` | the charts and the controller pane show the next mode |
| `s` | save the run's profile as TOML (`profiles/NAME.toml`; load it with `--profile`) |
| `e` | export now: results CSV and summary.json of the rows so far, to a folder you confirm |
| `d` | discover local servers (Lemonade, llama-server, vLLM, LM Studio) and write a profile for one (`profiles/discovered-KIND.toml`); also in the command palette (`Ctrl+P`) |
| `v` | once the run has ended: from the monitor, the summary again |
| `m` or `Esc` | from the summary, back to the monitor |
| `c` | from the summary, compare this run with another (type its folder or CSV; docs/compare.md) |
| `PgDn` `PgUp` `↓` `↑` `Home` | in the summary: scroll to the plots and the evaluation (the bottom line says when there is more below) |
| `q` | stop cleanly and exit (status 0); `Ctrl+C` the same with status 130; in the Discover dialog too (in a dialog with a text field `q` types, `Esc` closes it first) |
| `?` | this help (`Esc` closes it) |

Dialogs open when the run ends (Discover, Save, Export, this help) are closed as the summary
opens; their keys open them again.

**Panes.** Header: profile, backend, how the draft length reaches the server, model, run
folder. Banner: the phase (WARMUP, STEADY, LOAD, RECOVERY, PAUSED, DONE); while load is on,
how long it ran and how long is left. Progress: mode i of n, step j of N, the whole run with
the time left. Sparklines: latency, draft_length and acceptance of the current mode with the
last value and the mode's p50/p95. Controller: k now, EMA and thresholds (latency) or window
acceptance and targets (acceptance), the last decision and why. Modes: one row per finished
mode, the winner starred (lowest score among modes whose k provably reached the server).
Events: mode starts, thresholds, load on/off, failures with their error, warnings.

Stopping waits at most 5 s for the step in flight, stops the load burners and any server the
run started, and leaves complete files in the run folder.
"""


async def quit_app(app: App[Any]) -> None:
    """What `q` does on the screen below, from a modal screen (which hides the app's keys):
    the monitor stops its run cleanly (quit_run), the report viewer just exits."""
    await app.run_action("quit_run" if hasattr(app, "action_quit_run") else "quit")


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "quit_app", "Quit"),
    ]

    async def action_quit_app(self) -> None:
        await quit_app(self.app)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Markdown(HELP)
