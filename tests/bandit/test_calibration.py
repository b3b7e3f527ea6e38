"""Off-policy estimation checked against the holdout: on logs where the default policy's value
is known, the gap between its off-policy estimate (treatment) and control's measured value
covers 0 in most logs, and a propensity logged wrong is flagged, in the lift report and in
replay alike."""

import msgspec
import numpy as np
import pytest

from bandit.contracts.events import Candidate, Context, PolicyRef, RewardedEvent
from bandit.measurement import calibration
from bandit.measurement.lift import lift_report
from bandit.measurement.tallies import tally
from replay.evaluate import evaluate
from replay.logs import ReplayLog
from replay.results import Settings
from storage.config_file import load_config

CONFIG = load_config(environ={}, overrides=["slots.artwork.holdout_fraction=0.2"])
CANDIDATES = [Candidate(id=f"a{i}", features={"style": f"s{i}"}, default=i == 0) for i in range(4)]
# reward rate by the person's segment and the candidate shown; a0 is the editorial default
RATES = np.array([[0.30, 0.20, 0.10, 0.15], [0.10, 0.40, 0.20, 0.05], [0.20, 0.10, 0.15, 0.45]])
LOGGER = np.array([[0.6, 0.2, 0.1, 0.1], [0.1, 0.5, 0.2, 0.2], [0.3, 0.1, 0.1, 0.5]])
TRUTH = RATES[:, 0].mean()  # segments are equally likely
TEMPLATE = RewardedEvent(
    decision_id="t", ts=1.7e9, slot="artwork", key="title-1", user_hash="u", group="treatment",
    policy=PolicyRef(name="logger", version="v1"), context=Context(user={}, request={}),
    candidates=CANDIDATES, chosen=["a0"], probabilities=[1.0], explored=False,
    holdout_fraction=0.2, rewards=[0.0], reward=0.0, impressed=True, joined_at=1.7e9,
)  # fmt: skip


# a learned logger: it nearly never shows the default to segment 1, where the default is poor
SKEWED = np.array([[0.6, 0.2, 0.1, 0.1], [0.002, 0.598, 0.2, 0.2], [0.3, 0.1, 0.1, 0.5]])


def experiment(
    seed: int,
    decisions: int = 3000,
    misstated: float = 1.0,
    logger: np.ndarray = LOGGER,
    log_default: bool = True,
) -> list[RewardedEvent]:
    """A log with 20% control; treatment draws from `logger`. `misstated` multiplies the
    logged probability of the default (a logging bug), capped at 1. With `log_default`, both
    groups log the probability the treatment policy gives the default."""
    rng = np.random.default_rng(seed)
    segments = rng.integers(3, size=decisions)
    control = rng.random(decisions) < 0.2
    draws = rng.random(decisions)
    events = []
    for i, (segment, held) in enumerate(zip(segments.tolist(), control.tolist(), strict=True)):
        pmf = logger[segment]
        action = 0 if held else int(np.searchsorted(np.cumsum(pmf), draws[i]))
        logged = 1.0 if held else float(pmf[action])
        if action == 0 and not held:
            logged = min(1.0, logged * misstated)
        reward = float(rng.random() < RATES[segment, action])
        events.append(msgspec.structs.replace(
            TEMPLATE, decision_id=f"{seed}-{i}", user_hash=f"u{seed}-{i}",
            group="control" if held else "treatment", chosen=[f"a{action}"],
            probabilities=[logged], rewards=[reward], reward=reward,
            default_probability=float(pmf[0]) if log_default else None,
            context=Context(user={"segment": str(segment)}, request={}),
        ))  # fmt: skip
    return events


def gaps_of(events) -> dict[str, calibration.Gap]:
    (result,) = lift_report(tally(events), CONFIG)
    return {gap.estimator: gap for gap in result.calibration}


@pytest.mark.slow
@pytest.mark.parametrize("log_default", [True, False])
def test_the_gap_covers_zero_in_at_least_90_percent_of_logs(log_default):
    logs, covered, judged = 200, {"ips": 0, "snips": 0}, 0
    for seed in range(logs):
        gaps = gaps_of(experiment(seed, log_default=log_default))
        judged += gaps["ips"].judged
        assert not any(gap.flagged for gap in gaps.values() if gap.low <= 0 <= gap.high)
        for name in covered:
            covered[name] += gaps[name].low <= 0 <= gaps[name].high
            assert gaps[name].control == pytest.approx(TRUTH, abs=0.1)
    assert min(covered.values()) / logs >= 0.9, covered
    # a realised mean weight far below 1 withholds a verdict (the tail may be unseen): rarely
    assert judged / logs >= 0.95


@pytest.mark.slow
def test_where_the_policy_hardly_shows_the_default_the_check_keeps_to_where_it_does():
    """Segment 1 gets the default 0.2% of the time: over all decisions the estimate rests on
    a few huge weights (not judged); logged default probabilities let it compare the two
    other segments in both groups, judged, and right."""
    logs, covered = 200, 0
    for seed in range(logs):
        events = experiment(seed, logger=SKEWED)
        gaps = gaps_of(events)["ips"]
        assert gaps.judged and gaps.scope.startswith("where the policy gives the default")
        assert gaps.control == pytest.approx(RATES[[0, 2], 0].mean(), abs=0.1)
        covered += gaps.low <= 0 <= gaps.high
        if seed < 20:
            unlogged = [msgspec.structs.replace(e, default_probability=None) for e in events]
            assert gaps_of(unlogged)["ips"].scope == "all decisions"
    assert covered / logs >= 0.9, covered


def test_a_misstated_propensity_is_flagged_in_the_lift_report_and_in_replay_by_one_rule():
    events = experiment(seed=1, decisions=6000, misstated=1.6)
    gaps = gaps_of(events)
    assert gaps["ips"].flagged and gaps["ips"].value < 0
    # where every weight is bounded, a mean weight away from 1 is the logging's fault
    assert gaps["ips"].mean_weight == pytest.approx(1 / 1.6, abs=0.1)
    assert "weights average" in gaps["ips"].verdict()
    (result,) = lift_report(tally(events), CONFIG)
    assert any("disagrees with control" in w for w in result.warnings)
    settings = Settings(bootstrap=0, reward_model=False, estimators=("ips", "snips"))
    (slot,) = evaluate(ReplayLog(events, "misstated"), [], CONFIG, settings).slots
    by_name = {gap.estimator: gap for gap in slot.calibration}
    assert by_name["ips"].flagged
    # one rule: replay and the lift report both judge by the always-valid interval
    assert by_name["ips"].always_valid and gaps["ips"].always_valid
    assert "always-valid" in by_name["ips"].describe() and "DISAGREES" in by_name["ips"].describe()
    assert any("the log itself is suspect" in w for w in slot.warnings)
    # the same log logged right is not flagged
    honest = experiment(seed=1, decisions=6000)
    (slot,) = evaluate(ReplayLog(honest, "honest"), [], CONFIG, settings).slots
    assert not any(gap.flagged for gap in slot.calibration), slot.calibration
    assert gaps_of(honest)["ips"].low <= 0 <= gaps_of(honest)["ips"].high


def test_too_little_weight_on_the_default_is_not_judged():
    events = experiment(seed=2, decisions=400)[:60]
    for gap in gaps_of(events).values():
        assert not gap.judged and not gap.flagged and "not judged" in gap.verdict()


def test_rows_weights_multiply_down_the_page_and_stop_at_the_first_difference():
    rows = [Candidate(id=f"r{i}", default=i < 2) for i in range(4)]  # default: r0, r1, r2, r3
    event = msgspec.structs.replace(
        TEMPLATE, slot="rows", candidates=rows, chosen=["r0", "r1", "r3"],
        probabilities=[0.5, 0.25, 0.5], rewards=[1.0, 1.0, 1.0], reward=3.0,
    )  # fmt: skip
    terms = calibration.default_terms(event, event.rewards)
    assert terms == (2.0 + 8.0, 2.0, 0.0, 8.0, 64.0, False)  # r3 is not the default's third


def test_a_logged_default_probability_counts_the_weight_the_log_cannot_see():
    """A policy that nearly never shows the default: its few realised weights look like
    plenty, the logged probabilities say how little of the default the log covers."""
    rare = [msgspec.structs.replace(TEMPLATE, decision_id=str(i), chosen=["a1"],
                                    probabilities=[0.99], default_probability=0.001)
            for i in range(2000)]  # fmt: skip
    shown = msgspec.structs.replace(rare[0], decision_id="shown", chosen=["a0"],
                                    probabilities=[0.001])  # fmt: skip
    terms = calibration.default_terms(shown, [1.0])
    assert terms == (1000.0, 1000.0, 1000.0, 1.0, 1000.0, False)  # outside the checked region
    effective = calibration.effective_rounds(2001.0, 2001 * 1000.0)
    assert effective == pytest.approx(2.0, abs=0.01)
    unlogged = [msgspec.structs.replace(e, default_probability=None) for e in [*rare, shown]]
    realised = [calibration.default_terms(e, [1.0]) for e in unlogged]
    assert calibration.effective_rounds(
        sum(t.mass for t in realised), sum(t.mass_square for t in realised)
    ) == pytest.approx(1.0)
