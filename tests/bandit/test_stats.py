"""Rates and lifts with page-clustered intervals: exact point values, honest coverage."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.measurement.stats import lift, ratio_rate


@settings(max_examples=100, deadline=None)
@given(pages=st.lists(st.tuples(st.integers(1, 20), st.floats(0.0, 1.0)), min_size=2, max_size=200))
def test_the_rate_is_the_ratio_of_sums_inside_its_interval(pages):
    impressions = np.array([n for n, _ in pages], dtype=float)
    clicks = np.floor(impressions * np.array([f for _, f in pages]))
    r = ratio_rate(clicks, impressions)
    assert r.value == pytest.approx(clicks.sum() / impressions.sum())
    assert r.low <= r.value + 1e-12 and r.value <= r.high + 1e-12
    assert r.units == len(pages)


def test_no_pages_or_one_page_has_no_interval():
    assert math.isnan(ratio_rate(np.array([]), np.array([])).value)
    one = ratio_rate(np.array([1.0]), np.array([4.0]))
    assert one.value == 0.25 and math.isnan(one.low)
    assert math.isnan(lift(one, one).low)


def _pages(rng, count, rate):
    """Pages of 1-12 impressions whose clicks share a per-page mood (clustered)."""
    impressions = rng.integers(1, 13, count).astype(float)
    mood = np.clip(rng.normal(rate, rate / 2, count), 0.0, 1.0)
    return rng.binomial(impressions.astype(int), mood).astype(float), impressions


def test_intervals_cover_the_truth_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    truth_t, truth_c = 0.24, 0.20
    rate_hits = lift_hits = 0
    runs = 400
    for _ in range(runs):
        treatment = ratio_rate(*_pages(rng, 600, truth_t))
        control = ratio_rate(*_pages(rng, 150, truth_c))
        rate_hits += treatment.low <= truth_t <= treatment.high
        up = lift(treatment, control)
        lift_hits += up.low <= truth_t / truth_c - 1 <= up.high
    # 400 runs: the binomial sd of a 95% coverage is about 1.1 points
    assert 0.91 <= rate_hits / runs <= 0.985
    assert 0.91 <= lift_hits / runs <= 0.985


def test_a_real_lift_is_significant_and_no_lift_mostly_is_not():
    rng = np.random.default_rng(12)
    big = lift(ratio_rate(*_pages(rng, 3000, 0.3)), ratio_rate(*_pages(rng, 3000, 0.2)))
    assert big.p_value < 0.001 and big.low > 0.3
    null = [
        lift(ratio_rate(*_pages(rng, 300, 0.2)), ratio_rate(*_pages(rng, 300, 0.2))).p_value
        for _ in range(300)
    ]
    assert 0.02 <= np.mean(np.array(null) < 0.05) <= 0.09
