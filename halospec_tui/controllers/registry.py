"""Every adaptive controller by name, and the factory that maps a mode to its controller.

One entry per controller: the class (built with its settings object) and its settings
dataclass. The profile builds its `[controller]` table from this registry (one
`[controller.NAME]` sub-table per entry), so validation and docs/profiles.md know every
controller without a list of their own. Fixed modes need no entry: `fixed_K` is the mode
grammar's (halospec_tui/modes.py), and its controller has no settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from halospec_tui import modes
from halospec_tui.controllers.acceptance import AcceptanceController, AcceptanceControllerSettings
from halospec_tui.controllers.bandit import BanditController, BanditControllerSettings
from halospec_tui.controllers.base import AdaptiveSettings, Controller
from halospec_tui.controllers.fixed import FixedController
from halospec_tui.controllers.heuristic import HeuristicController, HeuristicControllerSettings
from halospec_tui.controllers.latency import LatencyController, LatencyControllerSettings
from halospec_tui.controllers.model import ModelController
from halospec_tui.controllers.model_settings import ModelControllerSettings


@dataclass(frozen=True)
class Registered:
    """One controller: how to build it, what it is configured with, and whose it is."""

    controller: Callable[[Any], Controller]  # the class; called with its settings object
    settings: type[AdaptiveSettings]
    new: bool  # this project's (evaluate runs these when a profile lists no adaptive mode)


REGISTRY: dict[str, Registered] = {
    "latency": Registered(LatencyController, LatencyControllerSettings, new=False),
    "acceptance": Registered(AcceptanceController, AcceptanceControllerSettings, new=False),
    "model": Registered(ModelController, ModelControllerSettings, new=True),
    "bandit": Registered(BanditController, BanditControllerSettings, new=True),
    "heuristic": Registered(HeuristicController, HeuristicControllerSettings, new=True),
}
NEW_CONTROLLERS = tuple(name for name, entry in REGISTRY.items() if entry.new)


def make_controller(mode: str, settings: object) -> Controller:
    """fixed_K → FixedController(K); adaptive / adaptive:latency → latency; adaptive:NAME → NAME,
    built with `settings.NAME` (`settings`: the profile's `[controller]` table)."""
    try:
        name, k = modes.parse(mode)
    except ValueError:
        raise ValueError(
            f"unknown mode {mode!r} (expected fixed_K, adaptive or adaptive:NAME)"
        ) from None
    if name == modes.FIXED:
        return FixedController(k or 1)
    entry = REGISTRY.get(name)
    if entry is None:
        available = ", ".join(modes.adaptive(n) for n in REGISTRY)
        raise ValueError(
            f"controller {name!r} of mode {mode!r} is not available (available: fixed_K, {available})"
        )
    return entry.controller(getattr(settings, name))
