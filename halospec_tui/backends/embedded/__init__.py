"""The embedded speculative-decoding engine: the default backend, no server to install.

`EmbeddedServer` (launcher) runs `python -m halospec_tui.backends.embedded` in its own process
and speaks llama-server's / Lemonade's HTTP protocol; `Engine` (engine) is the same physics
in-process. This package imports numpy only when `Engine` or `classify` is first used, so the
launcher stays light and the server process can pin BLAS threads before numpy loads.
"""

from __future__ import annotations

from typing import Any

from halospec_tui.backends.embedded.launcher import EmbeddedServer

__all__ = ["EmbeddedServer", "Engine", "GenerationResult", "classify"]


def __getattr__(name: str) -> Any:
    if name in ("Engine", "GenerationResult", "classify", "CATEGORIES", "DEFAULT_ALPHAS"):
        from halospec_tui.backends.embedded import engine

        return getattr(engine, name)
    raise AttributeError(name)
