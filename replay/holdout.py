"""The check of off-policy estimates against the holdout, from sums
(`bandit.measurement.calibration`).

Each event's terms for the default policy, the default policy's estimator pieces over
treatment (per page, and over the rounds where the log supports the default) and control's
rewards are summed (`holdout_sums`); the sums of a log's parts add up, so a single file and
a partitioned log give the same gaps (`gaps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bandit.contracts.events import RewardedEvent
from bandit.measurement import calibration
from replay import estimators as est
from replay import pages
from replay.moments import Moments
from replay.rounds import Rounds
from replay.summed import Columns, Summed, plain

TERMS = calibration.DefaultTerms._fields  # the columns of `terms`
SUPPORTED = TERMS.index("supported")


def terms(rewarded: Sequence[RewardedEvent]) -> np.ndarray:
    """(events, 6): each event's `calibration.DefaultTerms`, `supported` as 0 or 1."""
    rows = [calibration.default_terms(e, e.rewards) for e in rewarded]
    return np.asarray(rows, dtype=float).reshape(-1, len(TERMS))


@dataclass
class CalibrationSums:
    """The default policy's estimator pieces and weight terms over treatment, per page
    (`every`) and over the rounds where the log supports the default (`supported`), and
    control's rewards there."""

    every: Summed
    supported: Summed
    control_supported: Moments

    def __add__(self, other: CalibrationSums) -> CalibrationSums:
        return CalibrationSums(
            self.every + other.every,
            self.supported + other.supported,
            self.control_supported + other.control_supported,
        )


def holdout_sums(
    treatment: Rounds,
    data: est.OffPolicyData,
    treated: np.ndarray,
    held: np.ndarray,
    estimators: Sequence[est.Estimator],
) -> CalibrationSums:
    """The check's sums over `treatment` (its off-policy `data` under the default policy,
    its events' `terms` in `treated`) and control (its events' terms in `held`), both ways:
    whether the check keeps to the supported rounds is known only once the whole log is in.
    IPS is always among the estimators: unbiased whatever the target, it tells the log's
    faults from the other estimators' biases."""
    estimators = [est.IPS(), *(e for e in estimators if e.name != "ips")]
    supported = treated[:, SUPPORTED] > 0
    chosen = data.select(supported[treatment.event_index])
    every, only = Columns(), Columns()
    for estimator in estimators:
        every.add(("default", estimator.name), pages.by_page(estimator.pieces(data), treatment))
        only.add(("default", estimator.name), estimator.pieces(chosen))
    for columns, rows in ((every, treated), (only, treated[supported])):
        for name in ("page_weight", "mass", "mass_square"):
            columns.add_weights(name, rows[:, TERMS.index(name)])
    no_resampling = np.random.SeedSequence(0)
    return CalibrationSums(
        Summed(every.moments(0, no_resampling), every.layouts, every.weights, {}),
        Summed(only.moments(0, no_resampling), only.layouts, only.weights, {}),
        plain(held[held[:, SUPPORTED] > 0, TERMS.index("reward")]),
    )


def gaps(sums: CalibrationSums, control_pages: Moments, confidence: float) -> list[calibration.Gap]:
    """Each estimator's value of the default policy (what control runs) from the treatment
    rounds, against control's measured value (`control_pages`: its page rewards): over the
    decisions where the log supports the default when both groups logged that, else over
    all."""
    bounded = sums.supported.sums.rounds > 0 and sums.control_supported.rounds > 0
    if bounded:
        share = sums.supported.sums.rounds / sums.every.sums.rounds
        scope = calibration.supported_scope(share)
        summed, reference = sums.supported, sums.control_supported
    else:
        scope, summed, reference = "all decisions", sums.every, control_pages
    control = est.estimate("control", reference, [(0, None)], confidence)
    moments, columns = summed.sums, summed.weights
    mass, square = columns["mass"], columns["mass_square"]
    effective = calibration.effective_rounds(float(moments.sums[mass]), float(moments.sums[square]))
    weight = est.estimate("weight", moments, [(columns["page_weight"], None)], 0.95)
    out = []
    for (_, name), layout in summed.layouts.items():
        value = est.estimate(name, moments, layout, confidence)
        out.append(calibration.gap(
            name, value.value, value.std_error, control.value, control.std_error, effective,
            (weight.value, weight.std_error), bounded, scope, confidence, always_valid=True,
        ))  # fmt: skip
    return out
