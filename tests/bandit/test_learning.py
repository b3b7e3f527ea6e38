"""Each VW slot kind learns a context-dependent best choice; uniform stays at chance."""

from dataclasses import dataclass

import msgspec
import pytest

from bandit.contracts.slots import SlotConfig, SlotKind
from bandit.learning.learner_core import weight_of
from bandit.policies import build_policy
from sim.synthetic import SyntheticWorld, rewarded_log
from storage.config_file import load_config


@dataclass(frozen=True)
class SlotResult:
    slot: str
    kind: str
    rounds: int
    learned_reward: float  # mean expected reward per round of the learning policy's choices
    greedy_reward: float  # of its greedy choice, over the last `tail` rounds
    uniform_reward: float
    oracle_reward: float


def run_slot(name: str, slot: SlotConfig, rounds: int, seed: int, tail: int) -> SlotResult:
    """Let `slot`'s policy learn for `rounds` rounds in the synthetic world, beside the
    uniform baseline; score the last `tail` rounds against the world's oracle."""
    slot = msgspec.structs.replace(slot, seed=seed if slot.seed is None else slot.seed)
    world = SyntheticWorld(slot.kind, seed=seed, candidates_per_round=8 if slot.kind.ranked else 6)
    policy = build_policy(slot)
    uniform = build_policy(msgspec.structs.replace(slot, policy="uniform"))
    learned = greedy = chance = oracle = 0.0
    try:
        for done in range(1, rounds + 1):
            round_ = world.draw()
            choice = policy.decide(round_.context, round_.candidates, world.select)
            policy.learn(world.rewarded_event(round_, choice, name))
            if done > rounds - tail:
                best = policy.decide(round_.context, round_.candidates, world.select, greedy=True)
                random = uniform.decide(round_.context, round_.candidates, world.select)
                learned += world.expected_reward(round_, choice.chosen)
                greedy += world.expected_reward(round_, best.chosen)
                chance += world.expected_reward(round_, random.chosen)
                oracle += world.oracle_reward(round_)
    finally:
        policy.close()
    return SlotResult(
        name, slot.kind.value, rounds, learned / tail, greedy / tail, chance / tail, oracle / tail
    )


ROUNDS, TAIL = 20_000, 2_000  # scored over rounds 18,000-20,000


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(SlotKind))
def test_vw_greedy_choice_reaches_90_percent_of_the_oracle(kind):
    slot = msgspec.structs.replace(SlotConfig(kind=kind), seed=3, select=3)
    result = run_slot(kind.value, slot, ROUNDS, seed=3, tail=TAIL)
    assert result.greedy_reward >= 0.9 * result.oracle_reward, result
    # The world is hard enough that chance is far below the oracle, so 90% means learning.
    assert result.uniform_reward <= 0.6 * result.oracle_reward, result


@pytest.mark.parametrize("kind", list(SlotKind))
def test_uniform_policy_earns_chance(kind):
    slot = msgspec.structs.replace(SlotConfig(kind=kind, policy="uniform"), seed=4, select=3)
    result = run_slot(kind.value, slot, ROUNDS, seed=4, tail=TAIL)
    # Both are uniform draws; the expected reward per round has sd ~0.2, so 2,000 rounds
    # give a standard error of the difference near 0.006: 0.03 is about 5 of them.
    assert result.greedy_reward == pytest.approx(result.uniform_reward, abs=0.03), result
    assert result.learned_reward == pytest.approx(result.uniform_reward, abs=0.03), result


def test_the_importance_weight_of_a_policy_on_its_own_log_is_one_and_moves_as_it_learns():
    slot = msgspec.structs.replace(load_config(environ={}).slots["artwork"], seed=3)
    policy = build_policy(slot)  # seeded: an unseeded one explores differently on every run
    world = SyntheticWorld(SlotKind.ARTWORK, seed=3, candidates_per_round=5, catalogue_size=40)
    own = rewarded_log(world, policy, "artwork", 200)
    assert [weight_of(policy, e) for e in own] == pytest.approx([1.0] * 200)
    for event in own:
        policy.learn(event)
    moved = [weight_of(policy, e) for e in own]
    # It learned: some logged choices are now likelier, most far less likely. (Over 40 seeds
    # of the policy the largest weight is 1.04 to 99.9, the smallest under 0.001.)
    assert max(moved) > 1.0 and min(moved) < 0.5
