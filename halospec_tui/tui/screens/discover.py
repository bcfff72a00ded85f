"""`d` (or the command palette's "Discover servers"): find local inference servers and
write a ready profile for the one the user picks, as `halospec-tui discover` does.

The probes (short, bounded HTTP requests, `backends.discover`) run in a thread worker, so
the monitor keeps drawing and the sweep keeps its own thread; the result comes back as a
message. Nothing here touches the running sweep: the written profile is for the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList, Static
from textual.widgets.option_list import Option

from halospec_tui.backends import discover as disc
from halospec_tui.discovered_profile import default_profile_path, write_profile
from halospec_tui.tui.screens.help import quit_app

Prober = Callable[[], list[disc.Found]]


class DiscoverScreen(ModalScreen[Path | None]):
    """Lists what answered; Enter on one writes profiles/discovered-KIND.toml."""

    BINDINGS = [
        Binding("escape", "cancel", "Close"),
        Binding("r", "rescan", "Probe again"),
        Binding("q", "quit_app", "Quit"),
    ]

    class Probed(Message):
        def __init__(self, found: list[disc.Found]) -> None:
            super().__init__()
            self.found = found

    def __init__(
        self,
        folder: Path = Path("profiles"),
        *,
        addresses: Sequence[str] | None = None,
        prober: Prober | None = None,
    ) -> None:
        super().__init__()
        self.folder = folder
        self.addresses = list(addresses or disc.DEFAULT_ADDRESSES)
        self._prober = prober or (lambda: disc.discover(self.addresses))
        self.found: list[disc.Found] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="discover-dialog", classes="dialog"):
            yield Label("Discover local inference servers", classes="dialog-title")
            yield Static(
                f"probing {', '.join(self.addresses)}", id="discover-status", classes="dialog-help"
            )
            yield OptionList(id="discover-list")
            yield Static("", id="discover-hint", classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Write profile", variant="primary", id="discover-ok")
                yield Button("Close", id="discover-cancel")

    def on_mount(self) -> None:
        self.action_rescan()

    def action_rescan(self) -> None:
        self.query_one("#discover-status", Static).update(
            f"probing {', '.join(self.addresses)} ..."
        )
        self.query_one("#discover-list", OptionList).clear_options()
        self._probe()

    @work(thread=True, exclusive=True, group="discover")
    def _probe(self) -> None:
        try:
            found = self._prober()
        except Exception:  # discover() never raises for a server; this is a last resort
            found = []
        self.post_message(self.Probed(found))

    def on_discover_screen_probed(self, message: Probed) -> None:
        self.found = message.found
        status = self.query_one("#discover-status", Static)
        options = self.query_one("#discover-list", OptionList)
        options.clear_options()
        if not self.found:
            status.update(
                "no server answered: start one (docs/servers.md), or keep using the embedded "
                "engine; r probes again"
            )
            return
        status.update(f"{len(self.found)} answered; Enter writes a profile for the highlighted one")
        for i, f in enumerate(self.found):
            text = f.line() + "".join(f"\n  - {n}" for n in f.notes)
            options.add_option(Option(text, id=str(i)))
        options.highlighted = 0
        options.focus()

    @on(OptionList.OptionSelected, "#discover-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self._write(int(event.option.id or 0))

    @on(Button.Pressed, "#discover-ok")
    def _ok(self) -> None:
        idx = self.query_one("#discover-list", OptionList).highlighted
        if idx is None or not self.found:
            self._hint("nothing to write yet", error=True)
            return
        self._write(idx)

    async def action_quit_app(self) -> None:
        """A modal screen hides the app's keys: q still stops the run and quits."""
        await quit_app(self.app)

    @on(Button.Pressed, "#discover-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    def _write(self, index: int) -> None:
        found = self.found[index]
        dest = self.folder / default_profile_path(found).name
        try:
            path = write_profile(found, dest)
        except OSError as e:
            self._hint(f"could not write {dest}: {e.strerror or e}", error=True)
            return
        self.dismiss(path)

    def _hint(self, text: str, error: bool = False) -> None:
        hint = self.query_one("#discover-hint", Static)
        hint.set_class(error, "-error")
        hint.update(text)
