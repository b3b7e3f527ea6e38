"""Watching a lift as it grows, in simulation: how often each kind of interval says
"significant" at some look when there is no lift (A/A), and how soon it does when there is.

A run splits `decisions` people-decisions between treatment and control (the holdout
fraction), each in one of the lift report's buckets of people, with Bernoulli rewards at
`base_rate` (times 1 + `lift` in treatment), and looks at the lift `looks` times, evenly,
through the product's own sums and intervals (`bandit.measurement`). The sums are drawn per
look (multinomial counts per bucket, binomial rewards), so a run of a million decisions
costs as much as one of a thousand.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bandit.measurement.stats import Lift, lift
from bandit.measurement.tallies import UNIT_BUCKETS, bucket_rate

MIN_DECISIONS = 200  # per group before a look counts (the lift report's own minimum)


@dataclass(frozen=True)
class Design:
    """One kind of run: its size, how often it is looked at, and the world it is run in."""

    decisions: int
    looks: int
    base_rate: float  # control's reward rate
    lift: float = 0.0  # the true lift of treatment
    holdout: float = 0.1


@dataclass(frozen=True)
class Run:
    """When each rule first said "significant" (decisions in all; None: never)."""

    fixed: float | None  # the fixed-horizon 95% interval excludes 0
    sequential: float | None  # the always-valid sequence excludes 0


def looks(rng: np.random.Generator, design: Design) -> Iterator[Lift]:
    """The lift at each of the design's evenly spaced looks of one run."""
    holdout, buckets = design.holdout, UNIT_BUCKETS
    shares = np.concatenate([np.full(buckets, 1 - holdout), np.full(buckets, holdout)])
    shares /= shares.sum()
    rate = design.base_rate
    rates = np.concatenate([np.full(buckets, rate * (1 + design.lift)), np.full(buckets, rate)])
    counts = np.zeros(2 * buckets)
    rewards = np.zeros(2 * buckets)
    edges = np.linspace(0, design.decisions, design.looks + 1).astype(int)
    for size in np.diff(edges):
        drawn = rng.multinomial(size, shares)
        counts += drawn
        rewards += rng.binomial(drawn, rates)
        treatment = bucket_rate(rewards[:buckets].tolist(), counts[:buckets].tolist())
        control = bucket_rate(rewards[buckets:].tolist(), counts[buckets:].tolist())
        yield lift(treatment, control)


def run(rng: np.random.Generator, design: Design) -> Run:
    """The first look at which each rule called the lift significant, counting only looks
    with at least MIN_DECISIONS per group (as the report and promotion do)."""
    fixed: float | None = None
    sequential: float | None = None
    minimum = MIN_DECISIONS / min(design.holdout, 1 - design.holdout)
    for look in looks(rng, design):
        if look.decisions < minimum:
            continue
        if fixed is None and math.isfinite(look.low) and (look.low > 0 or look.high < 0):
            fixed = look.decisions
        if sequential is None and look.sequence.excludes_zero:
            sequential = look.decisions
    return Run(fixed, sequential)
