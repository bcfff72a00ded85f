"""Draft-length controllers and the factory that maps a mode name to one.

Adding a controller is one entry in `REGISTRY`: its name (as in `adaptive:NAME`) and a
factory taking the profile and the mode's fixed k (None for adaptive modes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from halospec_tui.core.controllers.acceptance import AcceptanceController
from halospec_tui.core.controllers.bandit import BanditController
from halospec_tui.core.controllers.base import Controller, Observation
from halospec_tui.core.controllers.fixed import FixedController
from halospec_tui.core.controllers.heuristic import HeuristicController
from halospec_tui.core.controllers.latency import LatencyController
from halospec_tui.core.controllers.model import ModelController
from halospec_tui.profile import parse_mode

if TYPE_CHECKING:
    from halospec_tui.profile import Profile

Factory = Callable[["Profile", "int | None"], Controller]

REGISTRY: dict[str, Factory] = {
    "fixed": lambda p, k: FixedController(k or 1),
    "latency": lambda p, k: LatencyController(p.controller.latency),
    "acceptance": lambda p, k: AcceptanceController(p.controller.acceptance),
    "model": lambda p, k: ModelController(p.controller.model),
    "bandit": lambda p, k: BanditController(p.controller.bandit),
    "heuristic": lambda p, k: HeuristicController(p.controller.heuristic),
}
NEW_CONTROLLERS = ("model", "bandit", "heuristic")  # this project's, beside HaloSpec's


def make_controller(mode: str, profile: Profile) -> Controller:
    """fixed_K → FixedController(K); adaptive / adaptive:latency → latency; adaptive:NAME → NAME."""
    try:
        name, k = parse_mode(mode)
    except ValueError:
        raise ValueError(
            f"unknown mode {mode!r} (expected fixed_K, adaptive or adaptive:NAME)"
        ) from None
    factory = REGISTRY.get(name)
    if factory is None:
        available = ", ".join(f"adaptive:{n}" for n in REGISTRY if n != "fixed")
        raise ValueError(
            f"controller {name!r} of mode {mode!r} is not available (available: fixed_K, {available})"
        )
    return factory(profile, k)


__all__ = [
    "REGISTRY",
    "NEW_CONTROLLERS",
    "AcceptanceController",
    "BanditController",
    "Controller",
    "FixedController",
    "HeuristicController",
    "LatencyController",
    "ModelController",
    "Observation",
    "make_controller",
]
