"""Always-valid intervals: confidence sequences that may be looked at after every decision.

The lift, the guardrails, the calibration gap and the shadow's gain are shown as they grow
and acted on when they look significant. A fixed-horizon 95% interval checked again and
again finds "significance" where there is none (with 50 looks at an A/A split, about one
run in three: `benchmarks/sequential_bench.py`). A confidence sequence covers the true
value at every look at once, with probability 95%, so stopping at the first look that
excludes zero is valid.

The construction is the normal-mixture martingale of Robbins, used as an asymptotic
confidence sequence (Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, "Time-uniform central
limit theory and asymptotic confidence sequences", 2023; the mixture SPRT of Johari, Pekelis
and Walsh, "Always valid inference", 2017, which Optimizely's Stats Engine runs). With an
estimate `value` of a quantity whose standard error is `se` (from the same running sums as
the fixed-horizon interval: clustered by buckets of people, via the delta method), the
information is I = 1 / se^2 and the martingale mixed over effects ~ N(0, tau^2) is

    M(theta) = (1 + I tau^2)^(-1/2) * exp(tau^2 I^2 (value - theta)^2 / (2 (1 + I tau^2)))

By Ville's inequality M(theta) stays below 1/alpha at every look with probability 1 - alpha,
so {theta : M(theta) < 1/alpha} is the sequence, of half-width

    sqrt((1 + I tau^2) / (I^2 tau^2) * log((1 + I tau^2) / alpha^2)),

and 1/M(0) (at most 1) is an always-valid p-value. `tau` is the scale of effects the
sequence is tightest for; it never makes it invalid.

Assumptions: the buckets' sums are independent (a bucket is a union of people, and people
are what the holdout randomises), and the estimate is close to normal with a consistent
standard error (a central limit over buckets). Validity is asymptotic: with a few hundred
decisions per group it holds closely; below that the report says the figure is rough.
Because the result is a function of the running sums alone, merging partitions in any
order gives the same sequence as one stream, and the lift endpoint stays constant-time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.05
LIFT_TAU = 0.1  # lifts of about 10% (on the log scale) are what a slot's sequence is tuned for
RELATIVE_TAU = 0.1  # differences of rates: about 10% of the rate they are compared with


@dataclass(frozen=True)
class ConfidenceSequence:
    """One look at a confidence sequence: its interval now and an always-valid p-value."""

    low: float
    high: float
    p_value: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


UNDEFINED = ConfidenceSequence(math.nan, math.nan, math.nan)


def relative_tau(rate: float) -> float:
    """The `tau` of a difference of rates: RELATIVE_TAU of the rate it is compared with."""
    return RELATIVE_TAU * abs(rate) if rate else RELATIVE_TAU


def half_width(se: float, tau: float, alpha: float = ALPHA) -> float:
    """The sequence's half-width at standard error `se` (nan when it is not defined)."""
    if not (se > 0 and tau > 0 and math.isfinite(se)):
        return math.nan
    information = 1.0 / (se * se)
    spread = 1.0 + information * tau * tau
    return math.sqrt(spread / (information**2 * tau * tau) * math.log(spread / alpha**2))


def sequence(value: float, se: float, tau: float, alpha: float = ALPHA) -> ConfidenceSequence:
    """The sequence around `value` with standard error `se`. With no variation at all and
    no effect (a shadow equal to the live policy) it is the point 0; with no variation and
    an effect, undefined: a standard error of 0 comes from too few units to trust."""
    if se == 0 and value == 0:
        return ConfidenceSequence(0.0, 0.0, 1.0)
    width = half_width(se, tau, alpha)
    if not (math.isfinite(value) and math.isfinite(width)):
        return UNDEFINED
    information = 1.0 / (se * se)
    spread = 1.0 + information * tau * tau
    log_m = -0.5 * math.log(spread) + tau * tau * (information * value) ** 2 / (2 * spread)
    p_value = 1.0 if log_m <= 0 else math.exp(-log_m)
    return ConfidenceSequence(value - width, value + width, p_value)


def decisions_to_detect(
    value: float, se: float, decisions: float, tau: float, alpha: float = ALPHA
) -> float:
    """How many decisions in all the sequence would need to exclude zero if the effect
    stayed `value` and the standard error shrank as 1/sqrt(decisions): `decisions` when it
    already does, inf when there is no effect to detect."""
    if not (math.isfinite(value) and se > 0 and decisions > 0) or value == 0:
        return math.inf
    if half_width(se, tau, alpha) < abs(value):
        return decisions

    def detected(n: float) -> bool:
        return half_width(se * math.sqrt(decisions / n), tau, alpha) < abs(value)

    low, high = decisions, decisions * 2
    while not detected(high):
        low, high = high, high * 2
        if high > 1e15:
            return math.inf
    while high - low > max(1.0, low * 1e-3):
        middle = (low + high) / 2
        low, high = (low, middle) if detected(middle) else (middle, high)
    return math.ceil(high)
