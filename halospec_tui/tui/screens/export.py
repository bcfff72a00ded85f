"""`e`: export the rows so far (results.csv + summary.json) to a folder the user confirms."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


def default_export_dir(run_dir: Path) -> Path:
    return Path("exports") / Path(run_dir).name


class ExportScreen(ModalScreen[Path | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run_dir: Path, default: Path | None = None) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.default = default or default_export_dir(self.run_dir)
        self._confirm: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="export-dialog", classes="dialog"):
            yield Label("Export results.csv and summary.json (rows so far)", classes="dialog-title")
            yield Static(
                "to this folder (created if needed); Enter exports, Esc cancels",
                classes="dialog-help",
            )
            yield Input(value=str(self.default), id="export-path")
            yield Static("", id="export-hint", classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export", variant="primary", id="export-ok")
                yield Button("Cancel", id="export-cancel")

    def on_input_changed(self, event: Input.Changed) -> None:
        self._confirm = None
        self.query_one("#export-hint", Static).update("")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._export()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export-ok":
            self._export()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _export(self) -> None:
        hint = self.query_one("#export-hint", Static)
        text = self.query_one(Input).value.strip()
        if not text:
            hint.update("type a folder")
            return
        dest = Path(text).expanduser()
        if dest.exists() and not dest.is_dir():
            hint.update(f"{dest} is a file; give a folder")
            return
        if (dest / "results.csv").exists() and self._confirm != dest:
            if dest.resolve() == self.run_dir.resolve():
                hint.update("that is the run folder itself; give another folder")
                return
            self._confirm = dest
            hint.update(f"{dest} already holds results.csv: Enter again to replace it")
            return
        self.dismiss(dest)
