"""Profile -> backend, and which draft channel each kind uses when the profile says `auto`."""

from __future__ import annotations

from halospec_tui.backends.base import Backend
from halospec_tui.profile import KIND_CHANNELS, Profile, ProfileError


def resolve_channel(profile: Profile) -> str:
    """The profile's draft channel, `auto` resolved (a loaded profile was checked already;
    one built in code is checked here)."""
    kind, channel = profile.backend.kind, profile.backend.draft_channel
    allowed = KIND_CHANNELS[kind]
    if channel == "auto":
        return allowed[0]
    if channel not in allowed:
        raise ProfileError(
            f"backend.draft_channel: {kind} supports {', '.join(allowed)} (or auto), got {channel!r}"
        )
    return channel


def make_backend(profile: Profile) -> Backend:
    kind = profile.backend.kind
    channel = resolve_channel(profile)
    if kind == "embedded":
        from halospec_tui.backends.embedded_backend import EmbeddedBackend

        return EmbeddedBackend(profile, draft_channel=channel)
    if kind == "openai":
        from halospec_tui.backends.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(profile, draft_channel=channel)
    if kind == "lemonade":
        from halospec_tui.backends.lemonade import LemonadeBackend

        return LemonadeBackend(profile, draft_channel=channel)
    if kind == "llamacpp":
        from halospec_tui.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(profile, draft_channel=channel)
    if kind == "llamacpp-managed":
        from halospec_tui.backends.llamacpp_managed import ManagedLlamaCppBackend

        return ManagedLlamaCppBackend(profile, draft_channel=channel)
    if kind == "vllm":
        from halospec_tui.backends.vllm import VllmBackend

        return VllmBackend(profile, draft_channel=channel)
    if kind == "lmstudio":
        from halospec_tui.backends.lmstudio import LMStudioBackend

        return LMStudioBackend(profile, draft_channel=channel)
    raise ProfileError(f"backend.kind: {kind!r} is not available in this version")
