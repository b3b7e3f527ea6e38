"""Rates with intervals for the demo's summary: clicks per impression, clustered by page.

Impressions of one page are not independent (one person, one mood), so a rate is a ratio
of per-page sums and its interval comes from the delta method over pages, not from a
binomial over impressions. A lift is a ratio of two such rates from independent groups; its
interval is built on the log scale, where it is closer to normal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Rate:
    value: float
    low: float
    high: float
    pages: int
    events: float  # the numerator's total (clicks, plays)
    impressions: float

    @property
    def std_error(self) -> float:
        return (self.high - self.low) / (2 * Z95)


def ratio_rate(numerators: np.ndarray, denominators: np.ndarray) -> Rate:
    """sum(numerators) / sum(denominators) with a 95% delta-method interval over pages."""
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
    """treatment / control - 1, with a 95% interval and a two-sided p-value for no lift."""

    value: float
    low: float
    high: float
    p_value: float


def lift(treatment: Rate, control: Rate) -> Lift:
    if not (treatment.value > 0 and control.value > 0):
        return Lift(math.nan, math.nan, math.nan, math.nan)
    log_ratio = math.log(treatment.value / control.value)
    se = math.hypot(treatment.std_error / treatment.value, control.std_error / control.value)
    if not se > 0:
        return Lift(math.exp(log_ratio) - 1, math.nan, math.nan, math.nan)
    p_value = math.erfc(abs(log_ratio / se) / math.sqrt(2))
    return Lift(
        math.exp(log_ratio) - 1,
        math.exp(log_ratio - Z95 * se) - 1,
        math.exp(log_ratio + Z95 * se) - 1,
        p_value,
    )
