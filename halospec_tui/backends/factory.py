"""Profile -> backend: the kind's class from the registry, with its draft channel resolved.

The profile was validated when it was loaded (backend.kind and backend.draft_channel against
backends/registry.py), so nothing is checked again here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from halospec_tui.backends.base import Backend
from halospec_tui.backends.registry import KINDS

if TYPE_CHECKING:
    from halospec_tui.profile import Profile


def make_backend(profile: Profile) -> Backend:
    """The backend of `profile.backend.kind` on its draft channel (`auto`: the kind's first)."""
    kind = KINDS[profile.backend.kind]
    backend_class: type = kind.backend_class()  # each kind's class takes (profile, draft_channel)
    return backend_class(profile, draft_channel=kind.channel(profile.backend.draft_channel))
