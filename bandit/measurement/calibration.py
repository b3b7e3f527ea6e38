"""Off-policy estimates that check themselves against the holdout.

The control group is served the editorial default on-policy, so its reward per decision is
the default policy's value, measured without a weight or a model. The same value estimated
off-policy from the treatment group's log must agree with it: a gap whose interval excludes
0 says that off-policy estimates on this log cannot be trusted, for the default or any other
target. The usual causes: propensities logged wrong (a logging bug), a difference between
the groups' traffic or rewards (drift, a broken assignment), position effects the weights do
not model (rows), or weights so heavy-tailed that a self-normalised estimator is biased.

For the default policy a treatment decision's weight is 1 / p where treatment showed what
the default would have, 0 elsewhere; for rows, each position's weight is the product over
it and the positions above it (reward-interaction), and the page's term sums them.

A policy that has learned gives the default a tiny probability where it is poor, so the
log can hardly see the default there and the estimate rests on a few huge weights. When
decisions log the probability the treatment policy gives the default (`default_probability`,
single-choice slots, control decisions included), the check is made where that
probability is at least `MIN_SUPPORT`: the same requests in both groups (the region depends
on the request, not on the group), with weights of at most 1 / MIN_SUPPORT, so it can be
judged whatever the policy learned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

from bandit.contracts.events import DecisionEvent
from bandit.measurement.sequential import (
    UNDEFINED,
    ConfidenceSequence,
    relative_tau,
    sequence,
)
from bandit.policies.base import default_order

MIN_EFFECTIVE = 100.0  # effective rounds below which a gap is not judged: weights too few
MIN_SUPPORT = 0.05  # the default's probability from which a request is in the checked region


class DefaultTerms(NamedTuple):
    """A decision's terms for the default policy's value (a control decision's weight is 1)."""

    reward: float  # the sum over positions of weight x reward
    first_weight: float  # the first position's weight: SNIPS divides by its mean
    page_weight: float  # the last position's: its mean must be 1 when the log sees the tail
    # What the effective rounds count: when the decision logged the probability p the policy
    # gave the default, the weight's expectation 1 and its expected square 1 / p, so rounds
    # where the default was nearly impossible count whether or not it was shown; otherwise
    # (rows, older writers) the realised largest weight of its positions and its square.
    mass: float
    mass_square: float
    supported: bool  # the decision logged a default probability of at least MIN_SUPPORT


MAX_SQUARE = 1e12  # the expected square of a weight the policy gave (almost) no chance
WEIGHT_Z = 4.0  # how many standard errors a mean weight may stray from 1


def default_terms(event: DecisionEvent, rewards: Sequence[float]) -> DefaultTerms:
    """The default ranks candidates marked default first, then the rest, in the order sent
    (what the control group is shown)."""
    order = [event.candidates[i].id for i in default_order(event.candidates)]
    weights: list[float] = []
    weight = 1.0
    for k, (chosen, probability) in enumerate(zip(event.chosen, event.probabilities, strict=True)):
        weight = weight / probability if weight and order[k] == chosen else 0.0
        weights.append(weight)
    total = sum(w * r for w, r in zip(weights, rewards, strict=True))
    p = event.default_probability
    if p is not None and len(event.chosen) == 1:
        square = min(1.0 / p, MAX_SQUARE) if p else MAX_SQUARE
        return DefaultTerms(total, weights[0], weights[0], 1.0, square, p >= MIN_SUPPORT)
    largest = max(weights)
    return DefaultTerms(total, weights[0], weights[-1], largest, largest**2, False)


@dataclass(frozen=True)
class Gap:
    """One estimator's value of the default policy from treatment logs, against control."""

    estimator: str
    estimate: float
    control: float
    value: float  # estimate - control
    low: float
    high: float
    effective_rounds: float  # Kish's effective sample size of the default's weights
    mean_weight: float  # of the default's page weights over treatment: 1 in expectation
    mean_weight_error: float
    scope: str  # the decisions compared: all, or those where the log supports the default
    judged: bool  # enough weight, seen well enough, for the interval to mean something
    flagged: bool  # judged, and the gap or the mean weight says the log is not right
    # the gap's always-valid sequence; `flagged` reads it where the gap is watched
    sequence: ConfidenceSequence = UNDEFINED
    always_valid: bool = False  # whether `flagged` read the sequence (else the interval)

    def verdict(self) -> str:
        if self.effective_rounds < MIN_EFFECTIVE:
            return (
                f"not judged: {self.effective_rounds:,.0f} effective rounds "
                f"(at least {MIN_EFFECTIVE:,.0f} needed)"
            )
        weights = f"the default's weights average {self.mean_weight:.3f}, not 1"
        if not self.judged:
            return f"not judged: {weights}, so their tail is unseen"
        if self.flagged and not self._weight_ok:
            return f"DISAGREES: {weights}: the logged probabilities are not the ones used"
        if self.flagged:
            return "DISAGREES with control: do not trust this estimator on this log"
        return "agrees with control"

    def describe(self) -> str:
        """The one line replay and the lift report print for this gap: both judge it by its
        always-valid interval, so the same log gets the same verdict from each."""
        return (
            f"{self.estimator}, {self.scope}: default policy off-policy {self.estimate:.4f} vs "
            f"control {self.control:.4f}, gap {self.value:+.4f}, always-valid "
            f"[{self.sequence.low:+.4f}, {self.sequence.high:+.4f}]: {self.verdict()}"
        )

    @property
    def _weight_ok(self) -> bool:
        return abs(self.mean_weight - 1.0) <= WEIGHT_Z * self.mean_weight_error


def gap(
    estimator: str,
    estimate: float,
    estimate_error: float,
    control: float,
    control_error: float,
    effective_rounds: float,
    mean_weight: tuple[float, float],
    bounded: bool,
    scope: str = "all decisions",
    confidence: float = 0.95,
    always_valid: bool = False,
) -> Gap:
    """The gap of two independent estimates (treatment and control are disjoint groups).

    `mean_weight` (value, standard error) must be near 1. Where weights are `bounded` (the
    supported region) the log sees all of them, so a mean away from 1 means wrong logged
    probabilities: flagged. Elsewhere a mean below 1 may only mean that the rare huge
    weights did not turn up yet: not judged; above 1, flagged.
    """
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    value = estimate - control
    error = math.hypot(estimate_error, control_error)
    low, high = value - z * error, value + z * error
    mean, mean_error = mean_weight
    judged = effective_rounds >= MIN_EFFECTIVE and math.isfinite(error)
    astray = abs(mean - 1.0) > WEIGHT_Z * mean_error
    if not bounded and mean < 1.0 and astray:
        judged = False
    watched = sequence(value, error, relative_tau(control))
    excludes = watched.excludes_zero if always_valid else low > 0 or high < 0
    flagged = judged and (excludes or astray)
    return Gap(estimator, estimate, control, value, low, high, effective_rounds, mean,
               mean_error, scope, judged, flagged, watched, always_valid)  # fmt: skip


CAUSES = {  # by whether IPS is among the estimators that disagree
    True: "IPS is unbiased whatever the target, so the log itself is suspect: propensities "
    "logged wrong, a broken assignment, drift between the groups, or other slots of the page "
    "that differ between the groups and change this slot's rewards",
    False: "IPS agrees, so these estimators are biased on this log: heavy-tailed weights "
    "(self-normalised ones) or a wrong reward model (model-based ones)",
}


def warnings(gaps: Sequence[Gap]) -> list[str]:
    """One warning naming the estimators whose gap is flagged, and what that points to."""
    flagged = [g for g in gaps if g.flagged]
    if not flagged:
        return []
    names = ", ".join(g.estimator for g in flagged)
    cause = CAUSES[any(g.estimator == "ips" for g in flagged)]
    return [
        f"calibration: the default policy's {names} estimate disagrees with control, which "
        f"runs it; {cause}. Do not trust {names} here (docs/operations.md, Calibration)"
    ]


def supported_scope(share: float) -> str:
    return f"where the policy gives the default >= {MIN_SUPPORT:.0%} ({share:.0%} of decisions)"


def effective_rounds(weight_sum: float, weight_squares: float) -> float:
    return weight_sum**2 / weight_squares if weight_squares > 0 else 0.0
