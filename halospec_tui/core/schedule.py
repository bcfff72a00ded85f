"""Which mode runs when: the order that keeps machine drift out of the comparison.

* ``interleaved``: rounds of one step of every mode, in an order shuffled per round from the
  seed. Every round's steps meet the same moment (and, request index for request index, the
  same prompt), so drift spreads over every mode alike and modes compare pair by pair. For
  channels where switching k is cheap (per request, a server per k, the embedded engine).
* ``blocks``: rounds of ``block_steps`` steps per mode, the mode order shuffled per round,
  for channels where switching k costs a reload or a restart: fewer switches, and still no
  mode owns one stretch of time.
* ``sequential``: HaloSpec's order, every step of fixed_1, then fixed_2, ...: for reproducing
  the original (its comparisons are unpaired, and say so).

`auto` picks interleaved or blocks from the draft channel.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

ORDERS = ("auto", "interleaved", "blocks", "sequential")
EXPENSIVE_SWITCH = ("reload", "restart")


def resolve_order(order: str, channel: str) -> str:
    """The order a run uses: `auto` is blocks where switching k reloads or restarts a server,
    interleaved everywhere else."""
    if order != "auto":
        return order
    return "blocks" if channel in EXPENSIVE_SWITCH else "interleaved"


@dataclass(frozen=True)
class Stint:
    """`steps` consecutive steps of one mode within a round."""

    mode: str
    steps: int


def round_plan(
    order: str,
    round_no: int,
    remaining: dict[str, int],
    *,
    seed: int,
    block_steps: int = 5,
) -> list[Stint]:
    """The stints of round `round_no` (1-based) for the modes with steps left (mode -> steps
    left, in the profile's order). Sequential runs are one round with each mode's whole
    remainder; the others shuffle the mode order per round with a generator seeded by
    (seed, round), so a run is reproducible and independent of how long earlier rounds took."""
    modes = [m for m, left in remaining.items() if left > 0]
    if order == "sequential":
        return [Stint(m, remaining[m]) for m in modes]
    rng = random.Random(f"halospec-order:{seed}:{round_no}")
    shuffled = list(modes)
    rng.shuffle(shuffled)
    per = 1 if order == "interleaved" else max(1, block_steps)
    return [Stint(m, min(per, remaining[m])) for m in shuffled]


def planned_rounds(order: str, steps: Sequence[int], block_steps: int = 5) -> int:
    """Rounds a run of these per-mode step counts takes (for progress displays)."""
    if not steps:
        return 0
    most = max(steps)
    if order == "sequential":
        return 1
    if order == "blocks":
        return -(-most // max(1, block_steps))
    return most
