"""Independent IPS and the pseudo-inverse estimator: exactly unbiased where they claim to be
(their expectation over every ordering a logger can draw equals the target's value), covering
the exact truth of the enumerable Plackett-Luce world, and only ever computed with a logger
that reproduces the logged propensities."""

import json
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.contracts.events import PolicyRef
from bandit.contracts.slots import SlotKind
from replay import estimators as est
from replay import slates
from replay.evaluate import evaluate
from replay.logs import ReplayLog
from replay.results import Settings
from replay.rounds import Rounds
from replay.targets import parse_target
from storage.config_file import load_config
from tests.replay import plackett_luce as pl
from tests.replay.conftest import logged_by_real_versions

TARGET_SPEC = "python:tests.replay.plackett_luce:target_pmf"
LOGGER_SPEC = "python:tests.replay.plackett_luce:logger_pmf"


def _plackett_luce(weights: np.ndarray, positions: int) -> slates.Rankings:
    return slates.enumerate_rankings(
        lambda placed: pl.conditional(weights, list(placed)), len(weights), positions
    )


weights_st = st.lists(st.floats(0.05, 20.0), min_size=1, max_size=6).map(np.asarray)


@settings(max_examples=60, deadline=None)
@given(weights=weights_st, data=st.data())
def test_enumerated_orderings_are_a_distribution_with_consistent_marginals(weights, data):
    positions = data.draw(st.integers(1, len(weights)))
    rankings = _plackett_luce(weights, positions)
    assert len(rankings.orders) == slates.ranking_count(len(weights), positions)
    assert rankings.probability.sum() == pytest.approx(1.0)
    marginals = rankings.marginals()
    assert marginals.sum(axis=1) == pytest.approx(np.ones(positions))  # a row per position
    assert np.all(marginals.sum(axis=0) <= 1 + 1e-12)  # a row at most once per page
    pairs = rankings.pairs()
    assert np.allclose(np.diag(pairs), marginals.ravel()) and np.allclose(pairs, pairs.T)


def test_orderings_a_policy_never_draws_are_not_visited():
    greedy = slates.enumerate_rankings(lambda placed: np.eye(4)[len(placed)], 4, 3)
    assert greedy.orders.tolist() == [[0, 1, 2]] and greedy.probability.tolist() == [1.0]


@settings(max_examples=40, deadline=None)
@given(
    logger=st.lists(st.floats(0.1, 10.0), min_size=4, max_size=4).map(np.asarray),
    target=st.lists(st.floats(0.01, 10.0), min_size=4, max_size=4).map(np.asarray),
    effect=st.lists(st.floats(0.0, 1.0), min_size=12, max_size=12).map(
        lambda v: np.asarray(v).reshape(3, 4)
    ),
    positions=st.integers(1, 3),
)
def test_both_are_exactly_unbiased_for_rewards_additive_over_positions(
    logger, target, effect, positions
):
    """Summed over every ordering the logger draws, weighted by its probability, each
    estimate equals the target's exact value when a position's reward is a function of the
    row there: the estimators' claim, checked with no sampling noise."""
    mu = _plackett_luce(logger, positions)
    pi = _plackett_luce(target, positions)
    truth = pi.probability @ effect[np.arange(positions), pi.orders].sum(axis=1)
    pages = len(mu.orders)
    rounds = Rounds(
        slot="rows", events=[None] * pages,  # only the arrays are read
        event_index=np.repeat(np.arange(pages), positions),
        position=np.tile(np.arange(positions), pages), chosen=mu.orders.ravel(),
        propensity=np.ones(pages * positions),
        reward=effect[np.tile(np.arange(positions), pages), mu.orders.ravel()], width=4,
    )  # fmt: skip
    orders_of = slates.logged_orders
    assert [o.tolist() for o in orders_of(rounds)] == mu.orders.tolist()
    for make in (slates.independent, slates.pseudo_inverse):
        ((per_page, _),) = make(rounds, [mu] * pages, [pi] * pages)
        assert float(mu.probability @ per_page) == pytest.approx(truth, abs=1e-9), make.__name__


def test_independent_ips_equals_obps_on_the_reference_logs():
    """obp 0.4.1's `SlateIndependentIPS` on the same logs (tests/replay/obp_rows_reference.py
    computed its marginals by enumerating the 60 orderings itself)."""
    reference = json.loads(Path(__file__).with_name("obp_rows_reference.json").read_text())
    config = load_config(overrides=["slots.rows.select=3"], environ={})
    target = parse_target(TARGET_SPEC, config, 0)
    settings_ = Settings(bootstrap=0, reward_model=False, estimators=("ips",), logger=LOGGER_SPEC)
    for row in reference["logs"]:
        log = ReplayLog(pl.logged_pages(row["pages"], row["seed"]), "plackett-luce")
        (slot,) = evaluate(log, [target], config, settings_).slots
        assert slot.warnings == []
        by_name = {e.estimator: e.value for e in slot.pages[0].estimates}
        assert by_name["independent_ips"] == pytest.approx(row["slate_independent_ips"], abs=1e-9)


@pytest.mark.slow
def test_slate_estimators_cover_the_exact_page_truth_in_most_logs():
    mu, pi = _plackett_luce(pl.LOGGER, pl.POSITIONS), _plackett_luce(pl.TARGET, pl.POSITIONS)
    names = {
        "independent_ips": (slates.independent, False),
        "independent_snips": (slates.independent, True),
        "pseudo_inverse": (slates.pseudo_inverse, False),
        "pseudo_inverse_snips": (slates.pseudo_inverse, True),
    }
    covered = dict.fromkeys(names, 0)
    logs, pages = 200, 1000
    for seed in range(logs):
        rounds = Rounds.from_events("rows", pl.logged_pages(pages, 2000 + seed))
        for name, (make, normalised) in names.items():
            low, high = est.interval(
                name, make(rounds, [mu] * pages, [pi] * pages, normalised)
            ).normal
            covered[name] += low <= pl.true_values().sum() <= high
    rates = {name: count / logs for name, count in covered.items()}
    assert min(rates.values()) >= 0.9, rates


def test_a_logger_that_does_not_reproduce_the_log_is_refused_with_the_first_mismatch():
    config = load_config(overrides=["slots.rows.select=3"], environ={})
    log = ReplayLog(pl.logged_pages(50, 1), "plackett-luce")
    target = parse_target(TARGET_SPEC, config, 0)
    for logger, why in (
        (TARGET_SPEC, "is not the logger: it gives 150 of 150 rounds another probability"),
        ("logged", "version v1 of slot rows is not in the model store"),
        ("thompson", "not a fixed policy"),
    ):
        settings_ = Settings(bootstrap=0, reward_model=False, estimators=("ips",), logger=logger)
        (slot,) = evaluate(log, [target], config, settings_).slots
        assert any(why in w and "left out" in w for w in slot.warnings), slot.warnings
        names = {e.estimator for e in slot.pages[0].estimates}
        assert names.isdisjoint(slates.NAMES) and "standard_ips" in names


def test_pages_with_too_many_orderings_are_left_out_by_name():
    config = load_config(overrides=["slots.rows.select=3"], environ={})
    log = ReplayLog(pl.logged_pages(20, 1), "plackett-luce")
    settings_ = Settings(bootstrap=0, reward_model=False, estimators=("ips",),
                         logger=LOGGER_SPEC, max_rankings=59)  # fmt: skip
    (slot,) = evaluate(log, [parse_target(TARGET_SPEC, config, 0)], config, settings_).slots
    assert any("60 orderings, more than --max-rankings 59" in w for w in slot.warnings)


def test_the_versions_that_logged_are_the_default_logger(tmp_path):
    """A log of real VW CCB versions (untrained and stored) needs no --logger: replay loads
    each decision's version from the model store, as the audit does, and values a target
    with all four slate estimators; the logger valued as a target is the logged value."""
    config, _, log, _ = logged_by_real_versions(tmp_path, "rows", SlotKind.ROWS, 40)
    settings_ = Settings(bootstrap=0, reward_model=False, estimators=("ips",))
    targets = [parse_target(spec, config, 0) for spec in ("uniform", "logged")]
    (slot,) = evaluate(ReplayLog(log, "real-versions"), targets, config, settings_).slots
    assert not any("left out" in w for w in slot.warnings), slot.warnings
    uniform, logged = ({e.estimator: e.value for e in page.estimates} for page in slot.pages)
    assert set(slates.NAMES) <= set(uniform)
    treatment = slot.logging_value["treatment"].value
    for name in ("ips", "standard_ips", "independent_ips", "pseudo_inverse"):
        assert logged[name] == pytest.approx(treatment, rel=1e-6), name  # every weight is 1


def test_a_missing_version_names_itself(tmp_path):
    config, _, log, _ = logged_by_real_versions(tmp_path, "rows", SlotKind.ROWS, 10)
    stale = PolicyRef(name="vw", version="v00000042")
    gone = [e if e.group == "control" else msgspec.structs.replace(e, policy=stale) for e in log]
    settings_ = Settings(bootstrap=0, reward_model=False, estimators=("ips",))
    (slot,) = evaluate(ReplayLog(gone, "gone"), [parse_target("uniform", config, 0)], config,
                       settings_).slots  # fmt: skip
    assert any("version v00000042 of slot rows" in w for w in slot.warnings), slot.warnings
    assert "standard_ips" in {e.estimator for e in slot.pages[0].estimates}  # the rest remain
