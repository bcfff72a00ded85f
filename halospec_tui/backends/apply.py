"""How to apply a recommended draft length on the user's own server, per server kind.

The recommendation names a mode; this module turns it into what the user types: llama-server
flags, Lemonade's load call, vLLM's speculative config, LM Studio's draft-token setting, or,
for an adaptive winner, the controller and its profile keys.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from halospec_tui import modes

# where each llama-server n-gram type takes its draft length (tokens drafted per step)
NGRAM_SIZE_FLAGS = {
    "ngram-simple": "--spec-ngram-simple-size-m",
    "ngram-map-k": "--spec-ngram-map-k-size-m",
    "ngram-map-k4v": "--spec-ngram-map-k4v-size-m",
    "ngram-mod": "--spec-ngram-mod-n-max",
}
# which entry of `apply` speaks to the server kind the run used
PRIMARY = {
    "embedded": "llama-server",
    "openai": "llama-server",
    "llamacpp": "llama-server",
    "llamacpp-managed": "llama-server",
    "lemonade": "lemonade",
    "vllm": "vllm",
    "lmstudio": "lmstudio",
}


def llama_server_flags(spec_type: str, k: int, n_min: int = 0) -> str:
    """llama-server's flags for draft length k (current builds fix it at start-up)."""
    args = ["--spec-type", spec_type or "draft-simple", "--spec-draft-n-max", str(k)]
    size = NGRAM_SIZE_FLAGS.get(spec_type)
    if size:
        args += [size, str(k)]
    if n_min > 0:
        args += ["--spec-draft-n-min", str(min(n_min, k))]
    return " ".join(args)


def apply_settings(mode: str | None, backend_kind: str, profile: Any) -> dict[str, Any]:
    """The settings that put `mode` into effect; {} when nothing is recommended."""
    if not mode:
        return {}
    b = profile.backend
    if not modes.is_fixed(mode):
        name, _ = modes.parse(mode)
        settings = getattr(profile.controller, name, None)
        keys = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else {}
        return {
            "controller": mode,
            "profile": {"run.modes": [mode], f"controller.{name}": keys},
            "note": "it sets k per request, so it runs inside halospec-tui, against a server "
            "that takes a per-request draft length (channel request) or one server per k (pool)",
            "primary": "controller",
        }
    k = modes.fixed_k(mode)
    spec = b.spec_type if backend_kind in ("llamacpp-managed", "lemonade") else "draft-simple"
    flags = llama_server_flags(spec, k, b.n_min)
    return {
        "llama-server": flags,
        "lemonade": "POST /api/v1/load "
        + json.dumps({"model_name": profile.request.model, "llamacpp_args": flags}),
        "vllm": "--speculative-config '"
        + json.dumps({"method": "ngram", "num_speculative_tokens": k})
        + "' (keep your method and draft model; num_speculative_tokens is k)",
        "lmstudio": f"draft tokens (speculativeDecodingNumDraftTokensExact) = {k}",
        "primary": PRIMARY.get(backend_kind, "llama-server"),
    }
