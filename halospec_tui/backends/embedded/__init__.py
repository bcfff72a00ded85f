"""The embedded speculative-decoding engine: the default backend, no server to install.

`EmbeddedServer` (launcher) runs `python -m halospec_tui.backends.embedded` in its own process
and speaks llama-server's / Lemonade's HTTP protocol (server); `Engine` (engine) is the same
physics in-process, built from the modules beside it: `classify` (categories), the reply
text (filler), the `DraftPool` (draft_pool), a request's `GenerationResult` (result) and the
server-wide `Counters` with their Prometheus text (counters). This package imports numpy
only when `Engine` is first used, so the launcher stays light and the server process can
pin BLAS threads before numpy loads.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from halospec_tui.backends.embedded.launcher import EmbeddedServer

__all__ = ["EmbeddedServer", "Engine", "GenerationResult", "classify"]

# name -> the module beside this one that holds it, imported on first use
_LAZY = {
    "Engine": "engine",
    "DEFAULT_ALPHAS": "engine",
    "GenerationResult": "result",
    "classify": "categories",
    "CATEGORIES": "categories",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)
