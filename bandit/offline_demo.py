"""The offline demo: each slot kind's configured policy learns in the synthetic world,
beside the uniform baseline, and is scored against the world's oracle.

It shows the bandit core on its own, with no broker or server; `artbandit demo` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from bandit.config import Config, SlotConfig
from bandit.policies import build_policy
from bandit.progress import Progress
from bandit.synthetic import SyntheticWorld


@dataclass(frozen=True)
class SlotResult:
    slot: str
    kind: str
    rounds: int
    learned_reward: float  # mean expected reward per round of the learning policy's choices
    greedy_reward: float  # of its greedy choice, over the last `tail` rounds
    uniform_reward: float
    oracle_reward: float


def run_slot(
    name: str, slot: SlotConfig, rounds: int, seed: int, tail: int, quiet: bool = True
) -> SlotResult:
    """Let `slot`'s policy learn for `rounds` rounds; score the last `tail` rounds."""
    slot = msgspec.structs.replace(slot, seed=seed if slot.seed is None else slot.seed)
    world = SyntheticWorld(slot.kind, seed=seed, candidates_per_round=8 if slot.kind.ranked else 6)
    policy = build_policy(slot)
    uniform = build_policy(msgspec.structs.replace(slot, policy="uniform"))
    learned = greedy = chance = oracle = 0.0
    progress = Progress(rounds, f"{name} ({slot.kind}, {slot.policy})", quiet=quiet)
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
            progress.update(done)
    finally:
        progress.close()
        policy.close()
    return SlotResult(
        name, slot.kind.value, rounds, learned / tail, greedy / tail, chance / tail, oracle / tail
    )


def run(config: Config, rounds: int, seed: int, quiet: bool) -> list[SlotResult]:
    tail = max(1, rounds // 10)
    return [
        run_slot(name, slot, rounds, seed + i, tail, quiet)
        for i, (name, slot) in enumerate(config.slots.items())
    ]


def summary(results: list[SlotResult]) -> str:
    lines = [
        "Expected reward per page slot over the last 10% of rounds (higher is better):",
        f"{'slot':<10}{'kind':<9}{'exploring':>10}{'greedy':>9}{'uniform':>9}{'oracle':>9}"
        f"{'greedy/oracle':>15}",
    ]
    for r in results:
        lines.append(
            f"{r.slot:<10}{r.kind:<9}{r.learned_reward:>10.3f}{r.greedy_reward:>9.3f}"
            f"{r.uniform_reward:>9.3f}{r.oracle_reward:>9.3f}"
            f"{r.greedy_reward / r.oracle_reward:>15.1%}"
        )
    return "\n".join(lines)
