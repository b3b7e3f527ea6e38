"""Rates with intervals, clustered by the unit that was randomised or sampled.

Events of one unit are not independent (one page, one person), so a rate is a ratio of
per-unit sums (clicks per impression over pages, reward per decision over users) and its
interval comes from the delta method over units, not from a binomial over events. A lift
is a ratio of two such rates from independent groups; its interval is built on the log
scale, where it is closer to normal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bandit.measurement.sequential import (
    LIFT_TAU,
    UNDEFINED,
    ConfidenceSequence,
    decisions_to_detect,
    sequence,
)

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Rate:
    value: float
    low: float
    high: float
    units: int  # pages, users: the clusters
    events: float  # the numerator's total (clicks, reward)
    impressions: float  # the denominator's total (impressions, decisions)

    @property
    def std_error(self) -> float:
        return (self.high - self.low) / (2 * Z95)


def ratio_rate(numerators: np.ndarray, denominators: np.ndarray) -> Rate:
    """sum(numerators) / sum(denominators), one entry per unit, with a 95% delta-method
    interval over units."""
    num = np.asarray(numerators, dtype=float)
    den = np.asarray(denominators, dtype=float)
    n, total = len(num), float(den.sum())
    if n == 0 or total <= 0:
        return Rate(math.nan, math.nan, math.nan, n, float(num.sum()), total)
    value = float(num.sum()) / total
    if n < 2:
        return Rate(value, math.nan, math.nan, n, float(num.sum()), total)
    residual = num - value * den
    se = math.sqrt(float(np.sum(residual**2)) * n / (n - 1)) / total
    return Rate(value, value - Z95 * se, value + Z95 * se, n, float(num.sum()), total)


@dataclass(frozen=True)
class Lift:
    """treatment / control - 1: a fixed-horizon 95% interval and two-sided p-value for no
    lift (valid for one look), and the always-valid sequence (valid however often it is
    looked at: what decisions and alerts read), with the decisions both groups hold and how
    many in all the sequence would need to detect the lift as it stands."""

    value: float
    low: float
    high: float
    p_value: float
    sequence: ConfidenceSequence = UNDEFINED
    decisions: float = 0.0
    needed: float = math.inf


def lift(treatment: Rate, control: Rate) -> Lift:
    if not (treatment.value > 0 and control.value > 0):
        return Lift(math.nan, math.nan, math.nan, math.nan)
    log_ratio = math.log(treatment.value / control.value)
    se = math.hypot(treatment.std_error / treatment.value, control.std_error / control.value)
    decisions = treatment.impressions + control.impressions
    if not se > 0:
        return Lift(math.exp(log_ratio) - 1, math.nan, math.nan, math.nan, decisions=decisions)
    p_value = math.erfc(abs(log_ratio / se) / math.sqrt(2))
    logged = sequence(log_ratio, se, LIFT_TAU)
    return Lift(
        math.exp(log_ratio) - 1,
        math.exp(log_ratio - Z95 * se) - 1,
        math.exp(log_ratio + Z95 * se) - 1,
        p_value,
        ConfidenceSequence(math.exp(logged.low) - 1, math.exp(logged.high) - 1, logged.p_value),
        decisions,
        decisions_to_detect(log_ratio, se, decisions, LIFT_TAU),
    )


def json_ready(value: Any) -> Any:
    """`value` (dicts, lists, numbers) with every non-finite float as None: JSON has no NaN,
    and an undefined figure (a group with no data) is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value
