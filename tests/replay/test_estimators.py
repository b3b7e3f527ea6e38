"""Estimators: coverage of their intervals over seeded repetitions, agreement with plain
loops, and exact invariants (unbiasedness over an enumerated logging distribution)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replay import estimators as est

CONTEXTS, ACTIONS = 6, 5


def _problem(seed: int = 0):
    """A known world: logging and target policies per context, reward means per (x, a)."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(0.05, 0.6, size=(CONTEXTS, ACTIONS))
    logging = rng.dirichlet(np.full(ACTIONS, 3.0), size=CONTEXTS)
    greedy = np.eye(ACTIONS)[means.argmax(axis=1)]
    targets = {
        "uniform": np.full((CONTEXTS, ACTIONS), 1 / ACTIONS),
        "near_greedy": 0.9 * greedy + 0.1 / ACTIONS,
        "other": rng.dirichlet(np.ones(ACTIONS), size=CONTEXTS),
    }
    return means, logging, targets


def _log(means, logging, target, n, rng, model_noise=0.02):
    x = rng.integers(CONTEXTS, size=n)
    u = rng.random(n)[:, None]
    a = (logging[x].cumsum(axis=1) < u).sum(axis=1)
    a = np.minimum(a, ACTIONS - 1)
    r = (rng.random(n) < means[x, a]).astype(float)
    q = np.clip(means[x] + rng.normal(0, model_noise, size=(n, ACTIONS)), 0, 1)
    return est.OffPolicyData(
        reward=r, propensity=logging[x, a], target_chosen=target[x, a], chosen=a,
        target=target[x], q=q,
    )  # fmt: skip


def test_normal_intervals_cover_the_true_value_in_at_least_90_percent_of_200_runs():
    means, logging, targets = _problem()
    chosen = [est.IPS(), est.SNIPS(), est.DR(), est.SNDR(), est.ClippedIPS(1e9), est.SwitchDR()]
    for name, target in targets.items():
        truth = float(np.mean((target * means).sum(axis=1)))  # contexts are uniform
        hits = {e.name: 0 for e in chosen}
        for rep in range(200):
            data = _log(means, logging, target, 2000, np.random.default_rng(rep))
            for e in chosen:
                low, high = e.interval(data).normal
                hits[e.name] += low <= truth <= high
        for estimator, count in hits.items():
            assert count >= 180, (name, estimator, count)


def test_dr_error_is_lower_than_ips_error_with_a_good_reward_model():
    means, logging, targets = _problem(1)
    target = targets["near_greedy"]
    truth = float(np.mean((target * means).sum(axis=1)))
    ips_errors, dr_errors = [], []
    for rep in range(100):
        data = _log(means, logging, target, 1000, np.random.default_rng(1000 + rep))
        ips_errors.append((est.IPS().estimate(data) - truth) ** 2)
        dr_errors.append((est.DR().estimate(data) - truth) ** 2)
    assert np.mean(dr_errors) < 0.5 * np.mean(ips_errors)


def test_bootstrap_interval_agrees_with_the_normal_one_on_a_large_log():
    means, logging, targets = _problem(2)
    data = _log(means, logging, targets["other"], 20_000, np.random.default_rng(5))
    for e in (est.IPS(), est.SNIPS(), est.DR()):
        estimate = e.interval(data, bootstrap=300, seed=3)
        normal_width = estimate.normal[1] - estimate.normal[0]
        boot_width = estimate.bootstrap[1] - estimate.bootstrap[0]
        assert abs(boot_width / normal_width - 1) < 0.2, (e.name, estimate)
        assert estimate.bootstrap[0] < estimate.value < estimate.bootstrap[1]
    again = est.DR().interval(data, bootstrap=300, seed=3)
    assert again.bootstrap == est.DR().interval(data, bootstrap=300, seed=3).bootstrap


def _reference(name: str, data: est.OffPolicyData, max_weight=20.0, tau=20.0) -> float:
    """Each estimator as a plain loop, straight from its textbook formula."""
    n = len(data.reward)
    w = [data.target_chosen[i] / data.propensity[i] for i in range(n)]
    r = data.reward
    dm = [sum(data.target[i][a] * data.q[i][a] for a in range(len(data.q[i]))) for i in range(n)]
    qa = [data.q[i][data.chosen[i]] for i in range(n)]
    if name == "ips":
        return sum(w[i] * r[i] for i in range(n)) / n
    if name == "clipped_ips":
        return sum(min(w[i], max_weight) * r[i] for i in range(n)) / n
    if name == "snips":
        return sum(w[i] * r[i] for i in range(n)) / sum(w)
    if name == "dm":
        return sum(dm) / n
    if name == "dr":
        return sum(dm[i] + w[i] * (r[i] - qa[i]) for i in range(n)) / n
    if name == "sndr":
        return sum(dm) / n + sum(w[i] * (r[i] - qa[i]) for i in range(n)) / sum(w)
    if name == "switch_dr":
        return sum(dm[i] + (w[i] * (r[i] - qa[i]) if w[i] <= tau else 0) for i in range(n)) / n
    raise AssertionError(name)


@pytest.mark.parametrize("name", est.NAMES)
def test_estimators_agree_with_a_reference_loop(name):
    means, logging, targets = _problem(3)
    data = _log(means, logging, targets["other"], 3000, np.random.default_rng(9), 0.2)
    (estimator,) = est.make_estimators([name], max_weight=3.0, tau=3.0)
    assert estimator.estimate(data) == pytest.approx(_reference(name, data, 3.0, 3.0), abs=1e-9)


rewards = st.lists(st.floats(0, 10, allow_nan=False), min_size=2, max_size=50)


@given(rewards, st.data())
def test_snips_and_ips_of_the_logging_policy_are_the_mean_reward(reward, data):
    propensity = data.draw(
        st.lists(st.floats(1e-3, 1.0), min_size=len(reward), max_size=len(reward))
    )
    logged = est.OffPolicyData(reward=reward, propensity=propensity, target_chosen=propensity)
    mean = float(np.mean(reward))
    assert est.SNIPS().estimate(logged) == pytest.approx(mean, rel=1e-12, abs=1e-12)
    assert est.IPS().estimate(logged) == pytest.approx(mean, rel=1e-12, abs=1e-12)


@st.composite
def enumerated_problems(draw):
    """A context-free problem whose log lists action a exactly count_a times: estimator
    values on it are their expectations under logging probabilities count_a / total."""
    k = draw(st.integers(2, 5))
    counts = draw(st.lists(st.integers(1, 6), min_size=k, max_size=k))
    target = np.asarray(draw(st.lists(st.floats(0, 1), min_size=k, max_size=k)))
    if target.sum() == 0:
        target[0] = 1.0
    target = target / target.sum()
    means = np.asarray(draw(st.lists(st.floats(0, 1), min_size=k, max_size=k)))
    q = np.asarray(draw(st.lists(st.floats(0, 1), min_size=k, max_size=k)))
    actions = np.repeat(np.arange(k), counts)
    mu = np.asarray(counts) / sum(counts)
    data = est.OffPolicyData(
        reward=means[actions], propensity=mu[actions], target_chosen=target[actions],
        chosen=actions, target=np.tile(target, (len(actions), 1)),
        q=np.tile(q, (len(actions), 1)),
    )  # fmt: skip
    return data, float(target @ means)


@settings(max_examples=200)
@given(enumerated_problems())
def test_ips_and_dr_are_unbiased_over_the_logging_distribution(problem):
    data, truth = problem
    assert est.IPS().estimate(data) == pytest.approx(truth, abs=1e-9)
    assert est.DR().estimate(data) == pytest.approx(truth, abs=1e-9)  # whatever q is


@given(enumerated_problems())
def test_switch_dr_spans_dm_to_dr_and_clipping_only_lowers_ips(problem):
    data, _ = problem
    assert est.SwitchDR(tau=math.inf).estimate(data) == pytest.approx(est.DR().estimate(data))
    assert est.SwitchDR(tau=0.0).estimate(data) == pytest.approx(est.DM().estimate(data))
    assert est.ClippedIPS(1.0).estimate(data) <= est.IPS().estimate(data) + 1e-12


def test_bad_inputs_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="propensity"):
        est.OffPolicyData(reward=[1.0], propensity=[0.0], target_chosen=[1.0])
    with pytest.raises(ValueError, match="reward"):
        est.OffPolicyData(reward=[math.nan], propensity=[0.5], target_chosen=[1.0])
    data = est.OffPolicyData(reward=[1.0, 0.0], propensity=[0.5, 0.5], target_chosen=[1, 0])
    with pytest.raises(est.EstimatorError, match="reward model"):
        est.DR().estimate(data)
    with pytest.raises(ValueError, match="unknown"):
        est.make_estimators(["ipss"])
