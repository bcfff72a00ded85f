"""Shared fixtures: small, fast profiles for the embedded engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from halospec_tui import profile as P

ROOT = Path(__file__).resolve().parent.parent


def fast_profile(**run: object) -> P.Profile:
    """A few quick steps on the embedded engine: real HTTP, real child process."""
    p = P.embedded_default()
    p.name = "test-fast"
    p.run.modes = ["fixed_1", "fixed_4", "adaptive"]
    p.run.warmup = 1
    p.run.warmup_interval_s = 0.0
    p.run.steps_fixed = 3
    p.run.steps_adaptive = 4
    p.run.cooldown_s = 0.0
    p.request.max_tokens = 24
    p.request.timeout_s = 10.0
    p.load.cores = 1
    # other jobs on a shared test machine would flag steps as contaminated; the tests of
    # that check turn it back on
    p.run.foreign_cpu_limit = 0.0
    for k, v in run.items():
        setattr(p.run, k, v)
    return p


@pytest.fixture
def fast() -> P.Profile:
    return fast_profile()
