"""A small synthetic world where the best candidate depends on the person's taste.

It knows its oracle, so tests, benchmarks and the offline demo can measure how close a
policy gets to the best achievable reward and how far above chance it is.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import numpy as np

from bandit.contracts.events import (
    Candidate,
    Context,
    DecisionEvent,
    FeedbackEvent,
    FeedbackType,
    Group,
    PolicyRef,
    RewardedEvent,
)
from bandit.contracts.slots import SlotKind
from bandit.policies.base import Choice, Policy

TASTES = ("romance", "action", "comedy", "documentary")
DEVICES = ("tv", "phone", "web")


@dataclass(frozen=True)
class Round:
    """One request of the world: who is asking, and which candidates the page offers."""

    context: Context
    candidates: tuple[Candidate, ...]
    taste: int


class SyntheticWorld:
    """People with a hidden taste; candidates with a genre. A candidate whose genre matches
    the taste is taken with probability `match_rate`, others with `base_rate`; in a ranked
    slot, position i scales that by `position_bias**i`. Candidate sets vary per request."""

    def __init__(
        self,
        kind: SlotKind,
        seed: int = 0,
        candidates_per_round: int = 5,
        catalogue_size: int = 40,
        select: int = 3,
        match_rate: float = 0.6,
        base_rate: float = 0.1,
        position_bias: float = 0.8,
    ):
        self.kind = kind
        self.rng = np.random.default_rng(seed)
        self.candidates_per_round = candidates_per_round
        self.select = select if kind.ranked else 1
        self.match_rate = match_rate
        self.base_rate = base_rate
        self.position_weights = position_bias ** np.arange(self.select)
        self.genres = {f"c{i}": i % len(TASTES) for i in range(catalogue_size)}
        self.catalogue = [
            Candidate(id=cid, features={"genre": TASTES[g], "tone": f"tone{g}"})
            for cid, g in self.genres.items()
        ]

    def draw(self) -> Round:
        taste = int(self.rng.integers(len(TASTES)))
        context = Context(
            user={"taste": TASTES[taste], "age": int(self.rng.integers(18, 80))},
            request={"device": DEVICES[int(self.rng.integers(len(DEVICES)))]},
        )
        picks = self.rng.choice(len(self.catalogue), self.candidates_per_round, replace=False)
        return Round(context, tuple(self.catalogue[i] for i in picks), taste)

    def take_rate(self, round_: Round, candidate_id: str) -> float:
        return self.match_rate if self.genres[candidate_id] == round_.taste else self.base_rate

    def expected_reward(self, round_: Round, chosen: Sequence[str]) -> float:
        """Expected total reward of showing `chosen` in order."""
        rates = [self.take_rate(round_, cid) for cid in chosen]
        return float(np.dot(self.position_weights[: len(rates)], rates))

    def oracle_reward(self, round_: Round) -> float:
        rates = sorted((self.take_rate(round_, c.id) for c in round_.candidates), reverse=True)
        return float(np.dot(self.position_weights, rates[: self.select]))

    def chance_reward(self, round_: Round) -> float:
        """Expected reward of a uniformly random choice (order)."""
        mean_rate = np.mean([self.take_rate(round_, c.id) for c in round_.candidates])
        return float(self.position_weights.sum() * mean_rate)

    def sample_rewards(self, round_: Round, chosen: Sequence[str]) -> list[float]:
        probabilities = [
            self.take_rate(round_, cid) * self.position_weights[i] for i, cid in enumerate(chosen)
        ]
        return [float(self.rng.random() < p) for p in probabilities]

    def decision_event(
        self, round_: Round, choice: Choice, slot: str, group: Group = "treatment"
    ) -> DecisionEvent:
        """What serving would log for this round."""
        return choice.event(
            uuid.uuid4().hex, time.time(), slot, "synthetic", round_.context, round_.candidates,
            PolicyRef(name=slot, version="synthetic"), group=group,
        )  # fmt: skip

    def rewarded_event(
        self, round_: Round, choice: Choice, slot: str, group: Group = "treatment"
    ) -> RewardedEvent:
        """What the learner would produce for this round: the decision joined to its rewards."""
        decision = self.decision_event(round_, choice, slot, group)
        rewards = self.sample_rewards(round_, choice.chosen)
        return RewardedEvent.from_decision(decision, rewards, True, joined_at=decision.ts)


@dataclass(frozen=True)
class LoggedStream:
    """What serving and the frontend would have put on Kafka, in time order, and what a
    correct learner must make of it."""

    events: list[DecisionEvent | FeedbackEvent]
    impressed: int  # decisions with an impression: the rewarded events
    learnable: int  # impressed treatment decisions: the examples a learner learns


def logged_stream(
    world: SyntheticWorld,
    policy: Policy,
    slot: str,
    count: int,
    start_ts: float,
    spacing_s: float = 0.01,
    impression_rate: float = 0.9,
    control_fraction: float = 0.05,
) -> LoggedStream:
    """`count` decisions `spacing_s` apart from `start_ts`, each impressed with
    `impression_rate` one second later, and clicked (then played) per the world's rates."""
    logged: list[tuple[float, int, DecisionEvent | FeedbackEvent]] = []
    impressed = learnable = 0
    for n in range(count):
        round_ = world.draw()
        group: Group = "control" if world.rng.random() < control_fraction else "treatment"
        choice = policy.decide(round_.context, round_.candidates)
        decision = msgspec.structs.replace(
            world.decision_event(round_, choice, slot, group),
            decision_id=f"{slot}-{n:08d}-{world.rng.integers(1 << 30):08x}",
            ts=start_ts + n * spacing_s,
        )
        logged.append((decision.ts, len(logged), decision))
        if world.rng.random() >= impression_rate:
            continue
        impressed += 1
        learnable += group == "treatment"
        for position, reward in enumerate(world.sample_rewards(round_, choice.chosen)):
            at = None if not world.kind.ranked else position
            feedback: list[tuple[FeedbackType, float]] = [("impression", 1.0)]
            feedback += [("click", 4.0), ("play", 9.0)] * int(reward > 0)
            for kind, delay in feedback:
                event = FeedbackEvent(
                    decision_id=decision.decision_id, ts=decision.ts + delay, type=kind, position=at
                )
                logged.append((event.ts, len(logged), event))
    logged.sort(key=lambda item: item[:2])
    return LoggedStream([event for _, _, event in logged], impressed, learnable)


def rewarded_log(
    world: SyntheticWorld, policy: Policy, slot: str, count: int, start_ts: float = 1.7e9
) -> list[RewardedEvent]:
    """A replay log as the learner would write it: `count` rounds logged by `policy` (which
    does not learn), one second apart from `start_ts`."""
    log = []
    for i in range(count):
        round_ = world.draw()
        event = world.rewarded_event(round_, policy.decide(round_.context, round_.candidates), slot)
        log.append(msgspec.structs.replace(event, ts=start_ts + i, joined_at=start_ts + i + 60))
    return log
