"""A profile for a server that discovery found (backends/discover.py), written as TOML.

Used by `halospec-tui discover` and by the monitor's Discover dialog (`d`); the written file
is a normal profile, with comments that say what was found.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from halospec_tui import modes
from halospec_tui.backends.discover import Found
from halospec_tui.profile import Profile
from halospec_tui.textfile import one_line


def profile_for(found: Found, base: Profile | None = None) -> Profile:
    """A profile for `found`: HaloSpec's sweep (or `base`) on that server."""
    p = base if base is not None else Profile()
    p.name = f"discovered-{found.kind}"
    p.description = f"{found.label} at {found.url} (written by halospec-tui --discover)"
    p.backend.kind = found.kind
    p.backend.url = found.url
    p.backend.draft_channel = found.channel
    if found.model:
        p.request.model = one_line(found.model)  # a server's words: no control characters
    if found.channel == "none":
        # the server's k is fixed: one mode at that k, not nine measurements of one configuration
        p.run.modes = [modes.fixed(found.k_guess or 3)]
    return p


def default_profile_path(found: Found) -> Path:
    return Path("profiles") / f"discovered-{found.kind}.toml"


def write_profile(
    found: Found, path: str | os.PathLike[str] | None = None, base: Profile | None = None
) -> Path:
    """Write profile_for(found) as TOML (with a comment saying what was found); returns the path."""
    p = profile_for(found, base)
    dest = Path(path) if path is not None else default_profile_path(found)
    # the server's words (its model names) go into comments: one line each, or a newline
    # in a model name would write TOML of the server's choosing
    head = [f"# {one_line(found.line())}"] + [f"# note: {one_line(n)}" for n in found.notes]
    if found.channel == "none":
        head.append(
            f"# run.modes holds one mode: set fixed_K to the draft length the server was started "
            f"with{' (guessed from /metrics: ' + str(found.k_guess) + ')' if found.k_guess else ''}"
        )
    head.append(f"# run it: halospec-tui --profile {dest}")
    if dest.is_dir():
        raise IsADirectoryError(errno.EISDIR, "a folder (expected a file)", str(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".tmp")
    try:
        tmp.write_text("\n".join(head) + "\n\n" + p.to_toml(), encoding="utf-8")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)  # nothing half-written left behind
    return dest
