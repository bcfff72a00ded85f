"""adaptive:heuristic — Hugging Face transformers' draft-length schedule, a literature baseline.

transformers (``AssistedCandidateGenerator``, ``num_assistant_tokens_schedule="heuristic"``)
changes the number of assistant tokens after *every* verify step: +2 when every drafted token
was accepted, else −1 (never below 1). A server lets a client set k only per request, and a
request holds many verify steps, so the rule has to be read at request granularity. Two
readings, chosen by ``granularity``:

* ``steps`` (default): the sign of the drift the per-step rule would have over the request.
  Applied per step, the rule moves +2 with probability p (all k drafts accepted) and −1
  otherwise, so it drifts up while p > 1/3 and settles where p = α^k = 1/3. We estimate the
  request's α from its counters (accepted tokens are a leading run:
  ``A = S · α(1 − α^k)/(1 − α)`` over its S drafting steps) and step +2 when α̂^k > 1/3,
  else −1. This keeps the schedule's fixed point and its step sizes.
* ``request``: literal: +2 when every token drafted in the request was accepted
  (``draft_n_accepted == draft_n``), else −1. With replies of many verify steps this almost
  never happens, so k sinks to k_min; kept to show why the literal reading does not transfer.

Both clamp to [k_min, k_max] (transformers has no upper bound; with one, the +2/−1 schedule
can hover between k_max − 1 and k_max, which is the schedule's own behaviour, not noise). A
failed request, or one without counters, keeps k.
"""

from __future__ import annotations

from dataclasses import dataclass

from halospec_tui.controllers.base import (
    AdaptiveController,
    AdaptiveSettings,
    Decision,
    Observation,
    describe_move,
)
from halospec_tui.controllers.model import solve_alpha, verify_steps
from halospec_tui.settings import setting

FULL_SHARE = 1.0 / 3.0  # +2·p − 1·(1 − p) = 0


@dataclass
class HeuristicControllerSettings(AdaptiveSettings):
    """adaptive:heuristic — Hugging Face transformers' +2 / -1 draft-length schedule."""

    step_up: int = setting(2, lo=0, hi=64)
    step_down: int = setting(1, lo=0, hi=64)
    granularity: str = setting(
        "steps",
        choices=("steps", "request"),
        doc="steps: the per-verify-step rule's drift sign; request: all drafts accepted",
    )


class HeuristicController(AdaptiveController):
    name = "heuristic"
    settings_class = HeuristicControllerSettings

    def __init__(self, settings: HeuristicControllerSettings | None = None) -> None:
        super().__init__(settings)
        self.s: HeuristicControllerSettings
        self._pending: tuple[int, str, dict[str, float | None]] | None = None
        self._note = ""

    def decide(self) -> Decision:
        k = self.k
        if self._pending is None:
            why = self._note or "no counters yet"
            self._note = ""
            return Decision(k=k, reason=f"{why} → keep k {k}", values={})
        delta, why, values = self._pending
        self._pending = None
        new = self._clamp(k + delta)
        self.k = new
        return Decision(k=new, reason=f"{why} → {describe_move(k, new, delta)}", values=values)

    def observe(self, obs: Observation) -> None:
        self._pending = None
        if not obs.success:
            self._note = "last step failed"
            return
        steps = verify_steps(obs)
        if steps is None:
            self._note = "last reply had no draft counters"
            return
        drafted, accepted = int(obs.draft_n or 0), int(obs.draft_n_accepted or 0)
        _, drafting = steps
        if drafted <= 0 or drafting <= 0:
            self._note = "nothing drafted in the last reply"
            return
        up, down = self.s.step_up, -self.s.step_down
        if self.s.granularity == "request":
            full = accepted == drafted
            why = f"{accepted}/{drafted} drafted tokens accepted" + (" (all)" if full else "")
            self._pending = (up if full else down, why, {"accepted": float(accepted)})
            return
        alpha = solve_alpha([(accepted, drafting, drafted / drafting)])
        assert alpha is not None
        share = alpha ** max(obs.k, 1)
        full = share > FULL_SHARE
        why = (
            f"α {alpha:.2f}: share of full drafts α^{obs.k} = {share:.2f} "
            f"{'>' if full else '≤'} 1/3"
        )
        self._pending = (up if full else down, why, {"alpha": alpha, "full_share": share})
