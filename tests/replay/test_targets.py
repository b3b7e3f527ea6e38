"""Targets: every policy's distribution is a distribution; saved, trained, learning and
user-callable targets score a log; bad specs and bad callables are named."""

import msgspec
import numpy as np
import pytest

from bandit.contracts.slots import SlotKind
from bandit.policies import build_policy
from replay.rounds import Rounds
from replay.targets import TargetError, baseline_probabilities, parse_target
from storage.config_file import load_config
from storage.model_store import ModelStore
from tests.replay.conftest import uniform_log


@pytest.mark.parametrize("policy", ["vw", "uniform", "default", "thompson"])
@pytest.mark.parametrize("slot", ["artwork", "rows"])
def test_action_probabilities_are_distributions_over_the_free_candidates(policy, slot):
    config = load_config(overrides=[f"slots.{slot}.policy={policy!r}"], environ={})
    log = uniform_log(SlotKind(slot), 40, slot=slot)
    p = build_policy(config.slots[slot])
    for event in log[:20]:
        p.learn(event)
    for event in log[20:]:
        placed = event.chosen_indices()[:1] if slot == "rows" else []
        for greedy in (False, True):
            pmf = p.action_probabilities(event.context, event.candidates, placed, greedy)
            assert pmf.sum() == pytest.approx(1.0) and np.all(pmf >= 0)
            assert np.all(pmf[placed] == 0)
            if greedy:
                assert sorted(pmf.tolist())[-1] == 1.0


def test_learning_target_beats_uniform_and_trained_target_uses_the_training_part(artwork_log):
    config = load_config(environ={})
    rounds = Rounds.from_events("artwork", artwork_log)
    train, test = rounds.split(0.5)
    uniform = parse_target("uniform", config, 1).probabilities(None, test, quiet=True)
    learned = parse_target("learn:exploration.epsilon=0.1", config, 1)
    trained = parse_target("train:exploration.epsilon=0.1", config, 1)
    assert trained.trains and not learned.trains
    index = np.arange(len(test))

    def value(pmf):  # IPS over the uniformly logged test part
        return float(np.mean(pmf[index, test.chosen] / test.propensity * test.reward))

    assert value(learned.probabilities(None, test, quiet=True)) > 1.5 * value(uniform)
    assert value(trained.probabilities(train, test, quiet=True)) > 1.5 * value(uniform)


def test_a_saved_version_replays_its_own_slot(tmp_path, artwork_log):
    config = load_config(overrides=[f'model_store.path="{tmp_path}"'], environ={})
    policy = build_policy(config.slots["artwork"])
    for event in artwork_log[:1000]:
        policy.learn(event)
    info = ModelStore(tmp_path).save("artwork", policy)
    target = parse_target(f"store:artwork@{info.version}:greedy", config, 0)
    assert target.name == f"store:artwork@{info.version}:greedy"
    assert target.applies_to("artwork") and not target.applies_to("hero")
    rounds = Rounds.from_events("artwork", artwork_log[1000:1100])
    pmf = target.probabilities(None, rounds, quiet=True)
    assert np.all(pmf.max(axis=1) == 1.0)
    with pytest.raises(TargetError, match="v999"):
        parse_target("store:artwork@v999", config, 0)


def test_a_python_callable_is_a_target_and_a_wrong_distribution_is_named(tmp_path, artwork_log):
    module = tmp_path / "mine.py"
    module.write_text(
        "def first(context, candidates):\n"
        "    return [1.0] + [0.0] * (len(candidates) - 1)\n"
        "def broken(context, candidates):\n"
        "    return [0.5] * len(candidates)\n"
    )
    config = load_config(environ={})
    rounds = Rounds.from_events("artwork", artwork_log[:50])
    pmf = parse_target(f"python:{module}:first", config, 0).probabilities(None, rounds, True)
    assert np.all(pmf[:, 0] == 1.0)
    with pytest.raises(TargetError, match="summing to 1"):
        parse_target(f"python:{module}:broken", config, 0).probabilities(None, rounds, True)
    with pytest.raises(TargetError, match="no callable"):
        parse_target(f"python:{module}:missing", config, 0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("greedy", "unknown target"),
        ("train:epsilon", "not KEY=VALUE"),
        ("store:nope", "not in the config"),
        ("python:no_such_module_here:f", "cannot import"),
    ],
)
def test_bad_specs_are_refused_with_a_reason(spec, message):
    with pytest.raises(TargetError, match=message):
        parse_target(spec, load_config(environ={}), 0)


def test_a_bad_override_in_a_training_spec_names_the_key(artwork_log):
    target = parse_target("train:exploration.epsilon=7", load_config(environ={}), 0)
    rounds = Rounds.from_events("artwork", artwork_log[:20])
    with pytest.raises(TargetError, match=r"slots\.artwork\.exploration\.epsilon"):
        target.probabilities(rounds, rounds, quiet=True)


@pytest.mark.parametrize("kind", ["uniform", "default"])
@pytest.mark.parametrize("slot", ["artwork", "rows"])
def test_baselines_from_the_rounds_arrays_equal_their_policies(kind, slot):
    """uniform and default never decode a Parquet log's events: their pmfs come from the
    rounds' arrays, and must be what the policies themselves give (marked defaults, rows
    placed above, candidate counts that differ by event)."""
    config = load_config(environ={})
    rng = np.random.default_rng(3)
    log = []
    for event in uniform_log(SlotKind(slot), 60, slot=slot):
        keep = max(len(event.chosen), int(rng.integers(1, len(event.candidates) + 1)))
        candidates = [
            msgspec.structs.replace(c, default=bool(rng.random() < 0.3))
            for c in event.candidates[:keep]
        ]
        chosen = [c for c in event.chosen if c in {x.id for x in candidates}]
        if len(chosen) == len(event.chosen):
            log.append(msgspec.structs.replace(event, candidates=candidates))
    rounds = Rounds.from_events(slot, log)
    policy = build_policy(msgspec.structs.replace(config.slots[slot], policy=kind))
    expected = np.zeros((len(rounds), rounds.width))
    for i in range(len(rounds)):
        event = rounds.events[rounds.event_index[i]]
        pmf = policy.action_probabilities(event.context, event.candidates, rounds.placed(i))
        expected[i, : len(pmf)] = pmf
    assert len(rounds.defaults.values) and len(set(rounds.sizes.tolist())) > 1
    np.testing.assert_allclose(baseline_probabilities(kind, rounds), expected, atol=1e-15)
    target = parse_target(kind, config, 1)
    np.testing.assert_allclose(target.probabilities(None, rounds, True), expected, atol=1e-15)
