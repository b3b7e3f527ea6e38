"""Non-VW baselines with the same interface, for comparison, control and replay."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from bandit.contracts.events import Candidate, Context, RewardedEvent
from bandit.contracts.slots import SlotConfig
from bandit.policies.base import (
    Choice,
    Policy,
    argmax,
    default_order,
    default_share,
    sample_index,
)


class _Stateless(Policy):
    def _learn(self, event: RewardedEvent) -> None:
        pass

    def to_bytes(self) -> bytes:
        return b"{}"

    @classmethod
    def from_bytes(cls, slot: SlotConfig, state: bytes) -> Policy:
        if json.loads(state) != {}:
            raise ValueError(f"a {cls.type_name} policy has no state, got {state[:40]!r}")
        return cls(slot)


class UniformPolicy(_Stateless):
    """Every remaining candidate equally likely at each position: the chance baseline."""

    type_name = "uniform"

    def _decide(
        self, context: Context, candidates: Sequence[Candidate], count: int, greedy: bool
    ) -> Choice:
        order = self.rng.permutation(len(candidates))[:count]
        n = len(candidates)
        return Choice(
            tuple(candidates[i].id for i in order),
            tuple(1.0 / (n - position) for position in range(count)),
            explored=True,
            default_probability=1.0 / n if count == 1 else None,
        )

    def _probabilities(
        self,
        context: Context,
        candidates: Sequence[Candidate],
        placed: Sequence[int],
        remaining: list[int],
    ) -> Sequence[float]:
        return [1.0] * len(remaining)


class DefaultPolicy(_Stateless):
    """The editorial default (what the control group sees), with probability 1.

    One choice: the candidate marked default, else the first. Rows: the ones marked
    default first, then the rest, each group in the order the frontend sent.
    """

    type_name = "default"
    floored = False

    def _decide(
        self, context: Context, candidates: Sequence[Candidate], count: int, greedy: bool
    ) -> Choice:
        chosen = tuple(candidates[i].id for i in default_order(candidates)[:count])
        return Choice(chosen, (1.0,) * len(chosen), False, 1.0 if count == 1 else None)

    def _probabilities(
        self,
        context: Context,
        candidates: Sequence[Candidate],
        placed: Sequence[int],
        remaining: list[int],
    ) -> Sequence[float]:
        free = set(remaining)
        first = next(i for i in default_order(candidates) if i in free)
        return [1.0 if i == first else 0.0 for i in remaining]


class ThompsonPolicy(Policy):
    """Non-contextual Beta-Bernoulli Thompson sampling per candidate id.

    A reward r in [0, reward.max] counts as r/max of a success. The choice is sampled from
    the probability that each arm has the highest posterior draw, estimated with `draws`
    Monte-Carlo draws; the logged probability is exact for that sampling.
    """

    type_name = "thompson"
    draws = 512

    def __init__(self, slot: SlotConfig):
        super().__init__(slot)
        self.successes: dict[str, float] = {}
        self.failures: dict[str, float] = {}

    def _posterior(self, candidates: Sequence[Candidate]) -> tuple[np.ndarray, np.ndarray]:
        alpha = np.array([1.0 + self.successes.get(c.id, 0.0) for c in candidates])
        beta = np.array([1.0 + self.failures.get(c.id, 0.0) for c in candidates])
        return alpha, beta

    def _decide(
        self, context: Context, candidates: Sequence[Candidate], count: int, greedy: bool
    ) -> Choice:
        alpha, beta = self._posterior(candidates)
        samples = self.rng.beta(alpha, beta, size=(self.draws, len(candidates)))
        mean = alpha / (alpha + beta)
        remaining = list(range(len(candidates)))
        chosen, probabilities, explored = [], [], False
        default = None
        for _ in range(count):
            wins = np.bincount(samples[:, remaining].argmax(axis=1), minlength=len(remaining))
            pmf = (wins / self.draws).tolist()
            if count == 1:
                default = default_share(candidates, remaining, pmf)
            best = argmax([mean[i] for i in remaining])
            pick, probability = (best, pmf[best]) if greedy else sample_index(pmf, self.rng)
            explored = explored or pick != best
            chosen.append(candidates[remaining.pop(pick)].id)
            probabilities.append(max(probability, 1.0 / self.draws))
        return Choice(tuple(chosen), tuple(probabilities), explored, default)

    def _probabilities(
        self,
        context: Context,
        candidates: Sequence[Candidate],
        placed: Sequence[int],
        remaining: list[int],
    ) -> Sequence[float]:
        """Each remaining arm's chance of the highest posterior draw (Monte-Carlo)."""
        alpha, beta = self._posterior([candidates[i] for i in remaining])
        samples = self.rng.beta(alpha, beta, size=(self.draws, len(remaining)))
        wins = np.bincount(samples.argmax(axis=1), minlength=len(remaining))
        pmf: list[float] = np.maximum(wins / self.draws, 1.0 / self.draws).tolist()
        return pmf

    def _learn(self, event: RewardedEvent) -> None:
        scale = self.slot.reward.max
        for arm, reward in zip(event.chosen, event.rewards, strict=True):
            success = min(max(reward / scale, 0.0), 1.0)
            self.successes[arm] = self.successes.get(arm, 0.0) + success
            self.failures[arm] = self.failures.get(arm, 0.0) + 1.0 - success

    def to_bytes(self) -> bytes:
        return json.dumps({"successes": self.successes, "failures": self.failures}).encode()

    @classmethod
    def from_bytes(cls, slot: SlotConfig, state: bytes) -> ThompsonPolicy:
        data = json.loads(state)
        policy = cls(slot)
        policy.successes = {str(k): float(v) for k, v in data["successes"].items()}
        policy.failures = {str(k): float(v) for k, v in data["failures"].items()}
        return policy
