"""`s`: save the run's profile as TOML under a name the user gives."""

from __future__ import annotations

import copy
import re
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from halospec_tui.profile import Profile

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def profile_target(text: str, folder: Path) -> Path:
    """A bare name -> folder/NAME.toml; anything with a slash or .toml is taken as a path."""
    text = text.strip()
    if not text:
        raise ValueError("type a name, e.g. my-run")
    if "/" in text or text.endswith(".toml"):
        p = Path(text).expanduser()
        return p if p.suffix == ".toml" else p.with_name(p.name + ".toml")
    if not NAME_RE.match(text):
        raise ValueError("a name uses letters, digits, '.', '_' and '-' only")
    return folder / f"{text}.toml"


def save_profile(profile: Profile, path: Path) -> Profile:
    """Write the profile with its name set to the file's stem; returns what was written."""
    saved = copy.deepcopy(profile)
    saved.name = path.stem
    saved.save(path)
    return saved


class SaveProfileScreen(ModalScreen[Path | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, profile: Profile, folder: Path = Path("profiles")) -> None:
        super().__init__()
        self.profile = profile
        self.folder = folder
        self._confirm: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="save-dialog", classes="dialog"):
            yield Label("Save this run's profile as TOML", classes="dialog-title")
            yield Static(
                f"a name is saved as {self.folder}/NAME.toml; a path is used as given",
                classes="dialog-help",
            )
            yield Input(
                value=f"{self.profile.name}-saved", id="save-name", placeholder="name or path.toml"
            )
            yield Static("", id="save-hint", classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", variant="primary", id="save-ok")
                yield Button("Cancel", id="save-cancel")

    def on_mount(self) -> None:
        self._hint()

    def _hint(self, text: str | None = None, error: bool = False) -> None:
        hint = self.query_one("#save-hint", Static)
        hint.set_class(error, "-error")
        if text is None:
            try:
                text = f"→ {profile_target(self.query_one(Input).value, self.folder)}"
            except ValueError as e:
                text, error = str(e), True
                hint.set_class(True, "-error")
        hint.update(text)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._confirm = None
        self._hint()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save-ok":
            self._save()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _save(self) -> None:
        try:
            path = profile_target(self.query_one(Input).value, self.folder)
        except ValueError as e:
            self._hint(str(e), error=True)
            return
        if path.exists() and self._confirm != path:
            self._confirm = path
            self._hint(f"{path} exists: press Enter again to overwrite it", error=True)
            return
        try:
            save_profile(self.profile, path)
        except OSError as e:
            self._hint(f"cannot write {path}: {e.strerror or e}", error=True)
            return
        self.dismiss(path)
