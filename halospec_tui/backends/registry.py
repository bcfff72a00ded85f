"""Every backend kind, one entry each: its class, its draft channels, where it listens by
default and which `[backend]` settings it reads.

Profile validation reads the kinds and their channels from here (so `backend.kind` and
`backend.draft_channel` are checked in one place), the factory builds a kind's class from
here, discovery probes the kinds' default addresses, and docs/profiles.md lists the entries.
Adding a backend is one new module in halospec_tui/backends and one entry below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from halospec_tui.backends.base import Backend

# how the draft length reaches a server (docs/servers.md): per request, by a model reload,
# one server per k, one server restarted per k, or not at all
CHANNELS = ("request", "reload", "pool", "restart", "none")
AUTO = "auto"  # the profile's word for "the kind's first channel"


@dataclass(frozen=True)
class BackendKind:
    name: str
    backend: str  # "module:Class", imported when a profile uses the kind
    channels: tuple[str, ...]  # the draft channels it can use; the first is what `auto` means
    default_url: str  # where it listens when backend.url is empty ("" = the harness starts it)
    keys: tuple[str, ...]  # the [backend] settings it reads beyond kind, url and draft_channel
    summary: str

    def backend_class(self) -> type[Backend]:
        module, _, cls = self.backend.partition(":")
        return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]

    def channel(self, setting: str) -> str:
        """The channel `backend.draft_channel` names (`auto`: the kind's first)."""
        return self.channels[0] if setting == AUTO else setting


# what every HTTP backend reads: the key, health check and the per-request draft keys
_HTTP = ("api_key_env", "health_timeout_s", "n_max_key", "n_min_key", "n_min")

KINDS: dict[str, BackendKind] = {
    kind.name: kind
    for kind in (
        BackendKind(
            "embedded",
            "halospec_tui.backends.embedded_backend:EmbeddedBackend",
            ("request", "none"),
            "",
            _HTTP,
            "this package's own speculative engine in a child process ([embedded] settings)",
        ),
        BackendKind(
            "openai",
            "halospec_tui.backends.openai_compat:OpenAICompatBackend",
            ("request", "none"),
            "http://127.0.0.1:8080",
            _HTTP,
            "any OpenAI-compatible server; reads llama-server's timings when a reply has them",
        ),
        BackendKind(
            "lemonade",
            "halospec_tui.backends.lemonade:LemonadeBackend",
            ("reload", "request", "none"),
            "http://localhost:13305",
            (*_HTTP, "spec_type", "reload_timeout_s"),
            "Lemonade Server: k set by reloading the model with --spec-draft-n-max K",
        ),
        BackendKind(
            "llamacpp",
            "halospec_tui.backends.llamacpp:LlamaCppBackend",
            ("request", "none"),
            "http://127.0.0.1:8080",
            _HTTP,
            "a running llama-server (current builds ignore per-request draft keys)",
        ),
        BackendKind(
            "llamacpp-managed",
            "halospec_tui.backends.llamacpp_managed:ManagedLlamaCppBackend",
            ("pool", "restart", "request", "none"),
            "",
            (
                "api_key_env",
                "n_max_key",
                "n_min_key",
                "n_min",
                "binary",
                "model_path",
                "draft_model_path",
                "spec_type",
                "extra_args",
                "threads",
                "ctx_size",
                "startup_timeout_s",
                "server_n_max",
                "pool_max_servers",
            ),
            "llama-server processes the harness starts, one per k on the pool channel",
        ),
        BackendKind(
            "vllm",
            "halospec_tui.backends.vllm:VllmBackend",
            ("none", "request"),
            "http://localhost:8000",
            _HTTP,
            "a running vLLM server: k fixed at launch, proof from /metrics",
        ),
        BackendKind(
            "lmstudio",
            "halospec_tui.backends.lmstudio:LMStudioBackend",
            ("none", "request"),
            "http://localhost:1234",
            (*_HTTP, "draft_model"),
            "LM Studio's REST API, whose replies carry draft counts",
        ),
    )
}


def kinds_reference() -> str:
    """Markdown table of every kind (docs/profiles.md), with the abilities its class declares."""
    lines = [
        "| kind | draft channels (auto = first) | default URL | per-reply counters | /metrics "
        "| `[backend]` keys it reads | what it is |",
        "|---|---|---|---|---|---|---|",
    ]
    for k in KINDS.values():
        cls = k.backend_class()
        lines.append(
            f"| `{k.name}` | {', '.join(k.channels)} | {k.default_url or 'started by the harness'}"
            f" | {'yes' if cls.reply_counters else 'no'} | {'yes' if cls.server_metrics else 'no'}"
            f" | {', '.join(f'`{key}`' for key in k.keys)} | {k.summary} |"
        )
    return "\n".join(lines)
