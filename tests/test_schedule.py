"""The order of a sweep: reproducible from the seed, balanced, HaloSpec's when asked."""

from __future__ import annotations

from collections import Counter

from halospec_tui.core.schedule import planned_rounds, resolve_order, round_plan

MODES = [f"fixed_{k}" for k in range(1, 9)] + ["adaptive"]


def _rounds(order: str, steps: dict[str, int], seed: int, block: int = 5) -> list[list[tuple]]:
    left = dict(steps)
    out = []
    r = 0
    while any(left.values()):
        r += 1
        plan = round_plan(order, r, left, seed=seed, block_steps=block)
        out.append([(s.mode, s.steps) for s in plan])
        for s in plan:
            left[s.mode] -= s.steps
    return out


def test_interleaved_order_is_reproducible_from_the_seed_and_shuffled_per_round() -> None:
    steps = {m: 10 for m in MODES}
    a, b = _rounds("interleaved", steps, 7), _rounds("interleaved", steps, 7)
    assert a == b
    assert _rounds("interleaved", steps, 8) != a
    assert len({tuple(r) for r in a}) > 5  # the order changes from round to round
    for rnd in a:
        assert sorted(m for m, _ in rnd) == sorted(MODES) and all(n == 1 for _, n in rnd)
    # every mode runs first in some round and last in some other: no mode owns a position
    firsts = Counter(r[0][0] for r in _rounds("interleaved", {m: 200 for m in MODES}, 1))
    assert set(firsts) == set(MODES)


def test_modes_with_fewer_steps_leave_the_rounds_when_done() -> None:
    steps = {**{m: 10 for m in MODES[:-1]}, "adaptive": 15}
    rounds = _rounds("interleaved", steps, 3)
    assert len(rounds) == 15
    assert all(len(r) == 9 for r in rounds[:10])
    assert all(r == [("adaptive", 1)] for r in rounds[10:])


def test_blocks_split_each_mode_into_blocks_over_rounds() -> None:
    steps = {"fixed_1": 10, "fixed_2": 10, "fixed_3": 7}
    rounds = _rounds("blocks", steps, 5, block=5)
    assert len(rounds) == 2
    assert sorted(rounds[0]) == [("fixed_1", 5), ("fixed_2", 5), ("fixed_3", 5)]
    assert sorted(rounds[1]) == [("fixed_1", 5), ("fixed_2", 5), ("fixed_3", 2)]
    assert planned_rounds("blocks", list(steps.values()), 5) == 2


def test_sequential_is_halospec_order() -> None:
    steps = {m: 10 for m in MODES}
    assert _rounds("sequential", steps, 1) == [[(m, 10) for m in MODES]]


def test_auto_order_follows_the_cost_of_switching_k() -> None:
    assert resolve_order("auto", "request") == "interleaved"
    assert resolve_order("auto", "pool") == "interleaved"
    assert resolve_order("auto", "reload") == "blocks"
    assert resolve_order("auto", "restart") == "blocks"
    assert resolve_order("sequential", "request") == "sequential"
