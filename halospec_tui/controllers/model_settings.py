"""adaptive:model's settings (the controller itself: model.py, whose docstring explains them)."""

from __future__ import annotations

from dataclasses import dataclass

from halospec_tui.controllers.base import AdaptiveSettings
from halospec_tui.settings import setting


@dataclass
class ModelControllerSettings(AdaptiveSettings):
    """adaptive:model — discounted estimates of acceptance and costs, then argmax of E(k)/(v+k·d)."""

    discount: float = setting(0.95, lo=0.0, hi=1.0, doc="weight kept per request on older data")
    prior_alpha: float = setting(0.7, lo=0.01, hi=0.99, doc="acceptance before any counters")
    prior_steps: float = setting(4.0, lo=0.0, hi=1e6, doc="verify steps' worth of prior_alpha")
    prior_cost_ratio: float = setting(
        0.1, lo=0.0, hi=100, doc="drafted-token cost / verify-step cost until measured"
    )
    probe_z: float = setting(
        2.0,
        lo=0.0,
        hi=100,
        doc="probe a neighbour k when the k chosen under d ± probe_z·se differs; 0 = never probe",
    )
    probe_gap: int = setting(4, lo=1, hi=1_000_000, doc="requests between two probes, at least")
    min_gain: float = setting(0.01, lo=0.0, hi=1.0, doc="predicted gain needed to change k")
    noise_floor: float = setting(0.02, lo=0.0, hi=1.0, doc="relative noise floor of step time")
    change_z: float = setting(4.0, lo=0.0, hi=1000, doc="residual z-score of a shift; 0 = off")
    change_runs: int = setting(2, lo=1, hi=1000, doc="consecutive such residuals for a shift")
    change_keep: float = setting(0.0, lo=0.0, hi=1.0, doc="weight kept on history at a shift")
