"""Always-valid intervals: watched at 50 looks, an A/A split is called significant in at
most 5% of runs (the fixed-horizon interval: about a third), a true lift is still found,
and the sequence is a function of the running sums, the same however they were merged."""

import math
import random

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.contracts.events import ShadowScore
from bandit.contracts.slots import SlotKind
from bandit.measurement.lift import lift_report, table
from bandit.measurement.sequential import decisions_to_detect, half_width, sequence
from bandit.measurement.tallies import merge, tally
from sim.sequential import Design, run
from storage.config_file import load_config
from tests.replay.conftest import uniform_log

CONFIG = load_config(environ={}, overrides=["slots.artwork.holdout_fraction=0.1"])
ALLOWED = 0.05 + 2 * math.sqrt(0.05 * 0.95 / 500)  # 5%, plus two simulation errors


def test_an_a_a_split_watched_50_times_is_rarely_called_significant():
    """500 runs of 100,000 decisions (5% reward rate, 10% holdout), 50 looks each."""
    runs = [run(np.random.default_rng(seed), Design(100_000, 50, 0.05)) for seed in range(500)]
    sequential = np.mean([r.sequential is not None for r in runs])
    fixed = np.mean([r.fixed is not None for r in runs])
    assert sequential <= ALLOWED, sequential
    assert fixed > ALLOWED, fixed  # the rule this replaces fails the same bound


def test_a_true_ten_percent_lift_is_found_at_some_look():
    """200 runs of 600,000 decisions (5% reward rate in control, 5.5% in treatment, 10%
    holdout), 50 looks each."""
    runs = [run(np.random.default_rng(s), Design(600_000, 50, 0.05, 0.1)) for s in range(200)]
    assert np.mean([r.sequential is not None for r in runs]) >= 0.8


@settings(max_examples=100, deadline=None)
@given(st.floats(1e-4, 10), st.floats(1e-3, 1), st.floats(-1, 1))
def test_the_sequence_is_wider_than_the_one_look_interval_and_shrinks_with_information(
    se, tau, value
):
    now = sequence(value, se, tau)
    assert now.low < value < now.high and now.high - value > 1.96 * se
    assert half_width(se / 10, tau) < half_width(se, tau)
    assert 0 <= now.p_value <= 1
    assert now.excludes_zero == (now.p_value < 0.05)


@settings(max_examples=100, deadline=None)
@given(st.floats(0.01, 1), st.floats(1e-3, 0.1), st.integers(100, 10**6))
def test_the_planning_figure_is_where_the_sequence_starts_to_exclude_zero(value, se, n):
    needed = decisions_to_detect(value, se, n, 0.1)
    assert needed >= n
    at = half_width(se * math.sqrt(n / needed), 0.1)
    assert at < value
    if needed > n * 1.01:
        assert half_width(se * math.sqrt(n / (needed * 0.99)), 0.1) >= value * 0.999


def test_no_effect_needs_no_planning():
    assert decisions_to_detect(0.0, 0.01, 1000, 0.1) == math.inf


TEMPLATE = msgspec.structs.replace(uniform_log(SlotKind.ARTWORK, 1)[0], default_probability=None)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_merging_partitions_in_any_order_gives_the_sequences_of_one_stream(seed, parts):
    rng = random.Random(seed)
    events = []
    for n in range(400):
        group = "control" if rng.random() < 0.2 else "treatment"
        reward = rng.choice([0.0, 0.5, 1.0])
        shadow = ShadowScore(policy=TEMPLATE.policy,
                             probabilities=[[rng.choice([0.25, 0.5, 1.0])] + [0.0] * 3])  # fmt: skip
        events.append(msgspec.structs.replace(
            TEMPLATE, decision_id=f"d{n}", user_hash=f"u{rng.randrange(300)}", group=group,
            rewards=[reward], reward=reward, shadow=shadow, candidates=TEMPLATE.candidates[:4],
        ))  # fmt: skip
    split: list[list] = [[] for _ in range(parts)]
    for event in events:
        split[rng.randrange(parts)].append(event)
    pieces = [tally(piece) for piece in split]
    rng.shuffle(pieces)
    (whole,) = lift_report(tally(events), CONFIG)
    (merged,) = lift_report(merge(pieces), CONFIG)
    assert merged.lift == whole.lift
    assert merged.shadow == whole.shadow
    assert [g.sequence for g in merged.calibration] == [g.sequence for g in whole.calibration]


def test_the_report_says_which_interval_is_which():
    rng = np.random.default_rng(5)
    events = []
    for n in range(3000):
        group = "control" if n % 10 == 0 else "treatment"
        reward = float(rng.random() < (0.3 if group == "treatment" else 0.2))
        events.append(msgspec.structs.replace(
            TEMPLATE, decision_id=f"d{n}", user_hash=f"u{n}", group=group, rewards=[reward],
            reward=reward,
        ))  # fmt: skip
    text = table(lift_report(tally(events), CONFIG))
    assert "always-valid [" in text and "one look [" in text
    (result,) = lift_report(tally(events[:400]), CONFIG)
    if not result.lift.sequence.excludes_zero:
        assert "more decisions to detect it" in table([result])


@pytest.mark.parametrize("value", [0.02, -0.02])
def test_a_gap_watched_as_it_grows_is_flagged_by_its_sequence(value):
    from bandit.measurement.calibration import gap

    args = ("ips", 0.2 + value, 0.008, 0.2, 0.004, 5000.0, (1.0, 0.01), True)
    once = gap(*args)
    watched = gap(*args, always_valid=True)
    assert once.flagged  # the one-look interval excludes 0 ...
    assert not watched.flagged and watched.always_valid  # ... the sequence does not yet
