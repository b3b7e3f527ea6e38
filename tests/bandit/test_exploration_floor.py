"""Exploration that never closes: every treatment candidate keeps its floor, a learned
choice weighs at most the cap, and a fall of the reward re-opens exploration for a while."""

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.config import ConfigError
from bandit.contracts.events import Context, PolicyRef, RewardedEvent
from bandit.contracts.slots import ChangeDetection, Exploration, SlotConfig, SlotKind
from bandit.policies import build_policy
from bandit.policies.base import Boost, with_floor
from bandit.policies.change import ChangeDetector
from sim.synthetic import SyntheticWorld
from storage.config_file import load_config
from storage.model_store import ModelStore


def _slot(kind: SlotKind, **changes) -> SlotConfig:
    return msgspec.structs.replace(SlotConfig(kind=kind, seed=4, select=3), **changes)


def _trained(slot: SlotConfig, rounds: int = 1500):
    policy = build_policy(slot)
    world = SyntheticWorld(slot.kind, seed=9, candidates_per_round=6)
    for _ in range(rounds):
        round_ = world.draw()
        policy.learn(world.rewarded_event(round_, policy.decide(round_.context, round_.candidates),
                                          slot.kind.value))  # fmt: skip
    return policy, world


@pytest.mark.parametrize("kind", list(SlotKind))
def test_a_confident_policy_still_gives_every_candidate_its_floor_and_logs_it(kind):
    """After 1,500 examples a greedy SquareCB (gamma 100,000) gives some candidates almost
    nothing; with the default floor each of n candidates keeps floor / n at every position,
    and the logged probabilities are exactly the pmf that replay recomputes."""
    greedy = Exploration(squarecb_gamma_scale=1e5)
    policy, world = _trained(_slot(kind, exploration=greedy))
    floor = policy.slot.exploration.floor
    bare, _ = _trained(_slot(kind, exploration=msgspec.structs.replace(greedy, floor=0.0)))
    lowest, bare_lowest = 1.0, 1.0
    for _ in range(50):
        round_ = world.draw()
        choice = policy.decide(round_.context, round_.candidates)
        placed = [[c.id for c in round_.candidates].index(i) for i in choice.chosen]
        for k, pmf in enumerate(policy.pmfs_along(round_.context, round_.candidates, placed)):
            free = len(round_.candidates) - k
            assert pmf[pmf > 0].min() >= floor / free - 1e-12
            assert choice.probabilities[k] == pytest.approx(pmf[placed[k]], rel=1e-5)
            lowest = min(lowest, pmf[pmf > 0].min() * free)
        bare_pmf = bare.action_probabilities(round_.context, round_.candidates)
        bare_lowest = min(bare_lowest, bare_pmf.min() * len(round_.candidates))
    assert lowest == pytest.approx(floor, rel=0.05)  # the floor binds somewhere
    assert bare_lowest < floor / 2  # which it would not without it


def _lucky_clicks_that_decide(cap: float, trials: int = 25) -> int:
    """Train, then for each of `trials` pages learn one click on its least likely candidate
    as if it had been chosen with probability 0.001 (each on a copy of the trained model);
    return how often that one click made the candidate the greedy choice."""
    policy, world = _trained(_slot(SlotKind.HERO, importance_weight_cap=cap), rounds=800)
    model = policy.to_bytes()
    decided = 0
    for _ in range(trials):
        round_ = world.draw()
        pmf = policy.action_probabilities(round_.context, round_.candidates)
        unlikely = round_.candidates[int(np.argmin(pmf))].id
        decision = policy.decide(round_.context, round_.candidates).event(
            "d", 0.0, "hero", "k", round_.context, round_.candidates,
            PolicyRef(name="hero", version="t"),
        )  # fmt: skip
        lucky = msgspec.structs.replace(decision, chosen=[unlikely], probabilities=[0.001])
        copy = type(policy).from_bytes(policy.slot, model)
        copy.learn(RewardedEvent.from_decision(lucky, [1.0], True, 1.0))
        decided += copy.decide(round_.context, round_.candidates, greedy=True).chosen == (unlikely,)
        copy.close()
    policy.close()
    return decided


def test_one_click_at_a_tiny_propensity_does_not_decide_once_weights_are_capped():
    uncapped = _lucky_clicks_that_decide(cap=1e6)
    assert uncapped >= 20  # one outcome weighed 1,000 times takes the top nearly always
    capped = _lucky_clicks_that_decide(cap=10.0)
    assert capped < 0.6 * uncapped  # weighed 10 times, it does in about half the pages
    assert _lucky_clicks_that_decide(cap=3.0) < capped / 2


def test_the_detector_is_quiet_on_a_steady_world_and_fires_soon_after_a_fall():
    rng = np.random.default_rng(3)
    steady = ChangeDetector(window=2000, z=5.0)
    assert not any(steady.observe(float(r)) for r in rng.random(300_000) < 0.03)
    rising = ChangeDetector(window=2000, z=5.0)
    rewards = np.concatenate([rng.random(50_000) < 0.03, rng.random(50_000) < 0.06])
    assert not any(rising.observe(float(r)) for r in rewards)
    falling = ChangeDetector(window=2000, z=5.0)
    rewards = np.concatenate([rng.random(50_000) < 0.06, rng.random(50_000) < 0.03])
    fired = [i for i, r in enumerate(rewards) if falling.observe(float(r))]
    assert fired and 50_000 < fired[0] < 50_000 + 6_000, fired


def test_a_detected_fall_raises_the_floor_for_boost_events_and_versions_carry_it(tmp_path):
    watch = ChangeDetection(window=200, z=4.0, boost_floor=0.4, boost_events=500)
    slot = _slot(SlotKind.HERO, change_detection=watch)
    policy, world = _trained(slot, rounds=3000)  # the synthetic world pays 10-60%
    assert policy.changes_detected == 0 and policy.exploration_floor == slot.exploration.floor
    for _ in range(2000):  # then nothing pays any more
        round_ = world.draw()
        choice = policy.decide(round_.context, round_.candidates)
        event = world.rewarded_event(round_, choice, "hero")
        policy.learn(msgspec.structs.replace(event, rewards=[0.0], reward=0.0))
        if policy.changes_detected:
            break
    assert policy.changes_detected == 1
    assert policy.boost == Boost(0.4, policy.examples_learned + 500)
    assert policy.exploration_floor == 0.4
    pmf = policy.action_probabilities(round_.context, round_.candidates)
    assert pmf.min() >= 0.4 / len(pmf) - 1e-12
    store = ModelStore(tmp_path)
    info = store.save("hero", policy)
    served = store.load("hero", info.version, slot).policy
    assert served.exploration_floor == 0.4
    policy.examples_learned += 500  # the boost ends once the learner has learned past it
    assert policy.exploration_floor == slot.exploration.floor
    served.close()
    policy.close()


def test_vw_args_may_not_set_what_a_named_setting_sets():
    for args, name in (("--clip_p 0.5", "importance_weight_cap"),
                       ("--power_t 0.5", "learning_rate_decay"),
                       ("--gamma_exponent=0.5", "squarecb_gamma_exponent"),
                       ("--max_prediction 3", "reward.max")):  # fmt: skip
        with pytest.raises(ConfigError, match=name):
            load_config(None, [f'slots.hero.vw_args="{args}"'], environ={})


def test_the_editorial_default_policy_has_no_floor():
    policy = build_policy(_slot(SlotKind.HERO, policy="default"))
    assert policy.exploration_floor == 0.0
    world = SyntheticWorld(SlotKind.HERO, seed=1)
    round_ = world.draw()
    assert sorted(policy.action_probabilities(Context(), round_.candidates))[-1] == 1.0


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=50).filter(lambda v: sum(v) > 1e-3),
    share=st.floats(0.0, 1.0),
)
def test_a_floored_pmf_is_a_pmf_where_every_entry_keeps_its_share(values, share):
    pmf = np.asarray(values) / sum(values)
    out = with_floor(pmf, share)
    assert out.sum() == pytest.approx(1.0) and np.all(out >= share / len(pmf) - 1e-12)
    assert np.all(out <= np.maximum(pmf, 1 / len(pmf)) + 1e-12)  # nothing rises past uniform
    assert out[int(np.argmax(pmf))] >= out.max() - 1e-12  # the policy's best stays best
