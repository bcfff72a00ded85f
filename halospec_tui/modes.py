"""The mode grammar, stated once: `fixed_K`, `adaptive` and `adaptive:NAME`.

A mode names what sets the draft length during its steps: `fixed_K` always asks for K
(HaloSpec's fixed modes), `adaptive` runs HaloSpec's latency controller, `adaptive:NAME` the
controller registered as NAME (halospec_tui/controllers). Everything that reads a mode name
(profile validation, the runner, the evaluation, the printers, the monitor) asks this module
instead of taking the string apart itself.
"""

from __future__ import annotations

import re

FIXED = "fixed"  # the controller name of a fixed mode
FIXED_PREFIX = "fixed_"
ADAPTIVE = "adaptive"
DEFAULT_CONTROLLER = "latency"  # what plain `adaptive` runs (HaloSpec's controller)
_MODE_RE = re.compile(r"(fixed_([0-9]+)|adaptive(:[a-z_]+)?)")  # whole names only (fullmatch)


def fixed(k: int) -> str:
    """The fixed mode of draft length k: fixed(4) == 'fixed_4'."""
    return f"{FIXED_PREFIX}{k}"


def adaptive(controller: str) -> str:
    """The adaptive mode of a controller: adaptive('model') == 'adaptive:model'."""
    return f"{ADAPTIVE}:{controller}"


FIXED_MODES = [fixed(k) for k in range(1, 9)]
DEFAULT_MODES = [*FIXED_MODES, ADAPTIVE]  # HaloSpec's sweep


def parse(mode: str) -> tuple[str, int | None]:
    """'fixed_4' -> ('fixed', 4); 'adaptive' -> ('latency', None); 'adaptive:model' ->
    ('model', None). ValueError when the name follows none of the three forms."""
    m = _MODE_RE.fullmatch(mode)
    if not m:
        raise ValueError(mode)
    if m.group(2):
        return FIXED, int(m.group(2))
    return (m.group(3)[1:] if m.group(3) else DEFAULT_CONTROLLER), None


def is_fixed(mode: str) -> bool:
    """A fixed mode (also for the mode names of a results file written by someone else)."""
    return mode.startswith(FIXED_PREFIX)


def is_adaptive(mode: str) -> bool:
    return mode.startswith(ADAPTIVE)


def short_name(mode: str) -> str:
    """The mode's name where a narrow table needs it shorter: 'adaptive:model' -> 'ad:model',
    'adaptive' -> 'ad'; fixed modes and foreign names unchanged."""
    if mode == ADAPTIVE:
        return "ad"
    if mode.startswith(ADAPTIVE + ":"):
        return "ad:" + mode[len(ADAPTIVE) + 1 :]
    return mode


def fixed_k(mode: str) -> int:
    """The K of a fixed mode: fixed_k('fixed_4') == 4."""
    return int(mode[len(FIXED_PREFIX) :])
