"""Rows replay is unbiased for the target's ranking: on an enumerable Plackett-Luce world
(tests/replay/plackett_luce.py) every position's estimate covers the exact truth, and the
end-to-end replay of a `python:` target lands on it."""

import json
from pathlib import Path

import numpy as np
import pytest

from replay import estimators as est
from replay.evaluate import evaluate
from replay.logs import ReplayLog
from replay.report import table
from replay.results import Settings
from replay.rounds import Rounds
from replay.targets import parse_target
from storage.config_file import load_config
from tests.replay import plackett_luce as pl

TRUTH = pl.true_values()
LOGS, PAGES = 200, 2000


def _position_data(rounds: Rounds, position: int) -> est.OffPolicyData:
    """The estimators' arrays at one position: the target's exact conditional pmfs, and a
    reward model that is wrong on purpose (no position effect), which DR must not mind."""
    orders = np.asarray([e.chosen_indices() for e in rounds.events])
    pmf = pl.conditionals(pl.TARGET, orders).reshape(-1, len(pl.ROWS))
    index = np.arange(len(rounds))
    prefix = rounds.prefix_product(pmf[index, rounds.chosen] / rounds.propensity)
    wrong_q = np.tile(0.5 * pl.RELEVANCE, (len(rounds), 1))
    at = rounds.position == position
    return est.OffPolicyData(
        reward=rounds.reward[at], propensity=rounds.propensity[at],
        target_chosen=pmf[at][np.arange(at.sum()), rounds.chosen[at]], chosen=rounds.chosen[at],
        target=pmf[at], q=wrong_q[at], prefix_weight=prefix[at],
    )  # fmt: skip


def test_true_values_are_a_distribution_of_rewards():
    # the logger's own values, two ways: enumeration and the mean click rate of a big log
    rounds = Rounds.from_events("rows", pl.logged_pages(50_000, seed=99))
    observed = [rounds.reward[rounds.position == k].mean() for k in range(pl.POSITIONS)]
    assert observed == pytest.approx(pl.true_values(pl.LOGGER), abs=0.01)
    assert not np.allclose(TRUTH, pl.true_values(pl.LOGGER), atol=0.01)  # a real difference


@pytest.mark.slow
def test_every_rows_estimator_covers_the_exact_truth_in_most_logs():
    estimators = est.make_estimators(
        ["ips", "clipped_ips", "snips", "dr", "sndr", "switch_dr"], max_weight=1e6, tau=1e6
    )
    covered = {(e.name, k): 0 for e in estimators for k in range(pl.POSITIONS)}
    errors = {k: [] for k in range(pl.POSITIONS)}
    for seed in range(LOGS):
        rounds = Rounds.from_events("rows", pl.logged_pages(PAGES, seed))
        for k in range(pl.POSITIONS):
            data = _position_data(rounds, k)
            for estimator in estimators:
                low, high = estimator.interval(data).normal
                covered[estimator.name, k] += low <= TRUTH[k] <= high
            errors[k].append(est.IPS().estimate(data) - TRUTH[k])
    rates = {key: count / LOGS for key, count in covered.items()}
    assert min(rates.values()) >= 0.9, rates
    for k, error in errors.items():  # and no bias: the mean error within 3 of its std errors
        assert abs(np.mean(error)) <= 3 * np.std(error) / np.sqrt(LOGS), (k, np.mean(error))


def test_without_the_weight_of_the_rows_above_the_estimate_would_be_biased():
    rounds = Rounds.from_events("rows", pl.logged_pages(20_000, seed=7))
    data = _position_data(rounds, 2)
    conditional_only = est.OffPolicyData(
        reward=data.reward, propensity=data.propensity, target_chosen=data.target_chosen
    )
    cascade = est.IPS().interval(data)
    naive = est.IPS().interval(conditional_only)
    assert cascade.normal[0] <= TRUTH[2] <= cascade.normal[1]
    assert not naive.normal[0] <= TRUTH[2] <= naive.normal[1]


def test_replay_of_a_plackett_luce_target_lands_on_the_truth_at_every_position():
    config = load_config(overrides=["slots.rows.select=3"], environ={})
    target = parse_target("python:tests.replay.plackett_luce:target_pmf", config, 0)
    log = ReplayLog(pl.logged_pages(20_000, seed=3), "plackett-luce")
    result = evaluate(log, [target], config, Settings(bootstrap=0))
    (slot,) = result.slots
    for position_result in slot.targets:
        truth = TRUTH[position_result.position]
        by_name = {e.estimator: e for e in position_result.estimates}
        for name in ("ips", "snips", "dr", "sndr"):
            e = by_name[name]
            assert abs(e.value - truth) <= 3.5 * e.std_error, (position_result.position, e)
    logged = [e.value for e in slot.logging_by_position["treatment"]]
    assert logged == pytest.approx(pl.true_values(pl.LOGGER), abs=0.01)
    assert slot.logging_value["treatment"].value == pytest.approx(sum(logged))
    assert slot.logging_value["treatment"].rounds == 20_000  # pages, not position rounds
    text = table(result)
    assert "per page" in text and "per position: @0" in text and "reward-interaction" in text


def test_rejection_sampling_keeps_a_page_position_only_while_the_target_agrees_above_it():
    config = load_config(overrides=["slots.rows.select=3"], environ={})
    target = parse_target("python:tests.replay.plackett_luce:target_pmf", config, 0)
    uniform = np.ones(len(pl.ROWS))
    log = ReplayLog(pl.logged_pages(30_000, seed=5, logger=uniform), "uniform rows")
    settings = Settings(bootstrap=0, reward_model=False, rejection=True)
    (slot,) = evaluate(log, [target], config, settings).slots
    for position_result in slot.targets:
        kept = position_result.rejection
        assert abs(kept.value - TRUTH[position_result.position]) <= 3.5 * kept.std_error
    kept_rounds = [t.rejection.rounds for t in slot.targets]
    assert kept_rounds[0] > kept_rounds[1] > kept_rounds[2]  # each position keeps fewer pages


def test_position_estimates_sum_to_obps_reward_interaction_ips():
    reference = json.loads(Path(__file__).with_name("obp_rows_reference.json").read_text())
    config = load_config(overrides=["slots.rows.select=3"], environ={})
    target = parse_target("python:tests.replay.plackett_luce:target_pmf", config, 0)
    settings = Settings(bootstrap=0, reward_model=False, estimators=("ips",))
    for row in reference["logs"]:
        log = ReplayLog(pl.logged_pages(row["pages"], row["seed"]), "plackett-luce")
        (slot,) = evaluate(log, [target], config, settings).slots
        page_value = sum(t.estimates[0].value for t in slot.targets)
        assert page_value == pytest.approx(row["slate_reward_interaction_ips"], abs=1e-9)
        (page,) = slot.pages
        by_name = {e.estimator: e for e in page.estimates}
        assert by_name["ips"].value == pytest.approx(row["slate_reward_interaction_ips"], abs=1e-9)
        assert by_name["standard_ips"].value == pytest.approx(row["slate_standard_ips"], abs=1e-9)
        assert page.mean_page_weight == pytest.approx(1.0, abs=0.25)  # PL logger: all supported


@pytest.mark.slow
def test_page_values_cover_the_exact_page_truth_in_most_logs():
    """The page interval is clustered by page: the positions of a page share its draws."""
    config = load_config(overrides=["slots.rows.select=3"], environ={})
    target = parse_target("python:tests.replay.plackett_luce:target_pmf", config, 0)
    settings = Settings(bootstrap=0, reward_model=False, estimators=("ips", "snips"))
    names = ("ips", "snips", "standard_ips", "standard_snips")
    covered = dict.fromkeys(names, 0)
    for seed in range(LOGS):
        log = ReplayLog(pl.logged_pages(PAGES // 2, 1000 + seed), "plackett-luce")
        (slot,) = evaluate(log, [target], config, settings).slots
        for e in slot.pages[0].estimates:
            covered[e.estimator] += e.normal[0] <= TRUTH.sum() <= e.normal[1]
    rates = {name: count / LOGS for name, count in covered.items()}
    assert min(rates.values()) >= 0.9, rates
