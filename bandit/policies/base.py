"""One interface for every policy, VW-backed or baseline.

Serving, the learner, replay and the simulator hold a `Policy` and never branch on which.
The public `decide` checks its arguments once and calls the policy's `_decide`.
"""

from __future__ import annotations

import abc
import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bandit.contracts.events import (
    Candidate,
    Context,
    DecisionEvent,
    Group,
    PolicyRef,
    RewardedEvent,
    ShadowScore,
)
from bandit.contracts.slots import SlotConfig
from bandit.policies import exposure
from bandit.policies.change import ChangeDetector


@dataclass(frozen=True, slots=True)
class Choice:
    """What a policy chose: ids in order, each with the probability it had when chosen.

    For ranked slots, `probabilities[i]` is conditional on the ids before position i.
    `explored` is True when any position differs from the policy's greedy choice.
    """

    chosen: tuple[str, ...]
    probabilities: tuple[float, ...]
    explored: bool
    # single-choice slots: the probability the policy gave the editorial default, chosen or
    # not (what calibration needs to know how much of the default's weight a log can see)
    default_probability: float | None = None

    def event(
        self,
        decision_id: str,
        ts: float,
        slot: str,
        key: str,
        context: Context,
        candidates: Sequence[Candidate],
        policy: PolicyRef,
        group: Group = "treatment",
        user_hash: str | None = None,
        holdout_fraction: float | None = None,
        shadow: ShadowScore | None = None,
    ) -> DecisionEvent:
        """The decision event that logs this choice (the one place a choice becomes one)."""
        return DecisionEvent(
            decision_id=decision_id, ts=ts, slot=slot, key=key, user_hash=user_hash,
            group=group, policy=policy, context=context, candidates=list(candidates),
            chosen=list(self.chosen), probabilities=list(self.probabilities),
            explored=self.explored, holdout_fraction=holdout_fraction,
            default_probability=self.default_probability, shadow=shadow,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Boost:
    """A raised exploration floor after a change of the world, until the policy has learned
    `until` examples (it travels with the versions a learner publishes)."""

    floor: float
    until: int


class Policy(abc.ABC):
    """A slot's policy: decides over a variable candidate set and learns from rewarded events."""

    #: The policy type name as it appears in config (`vw`, `uniform`, ...).
    type_name: str
    #: Whether the slot's exposure floor applies (not to the editorial default: control
    #: must see exactly what it claims to).
    floored = True

    def __init__(self, slot: SlotConfig):
        self.slot = slot
        self.examples_learned = 0
        self.rng = make_rng(slot.seed)
        watch = slot.change_detection
        self.detector = ChangeDetector(watch.window, watch.z) if watch.window else None
        self.changes_detected = 0
        self.boost: Boost | None = None

    def decide(
        self,
        context: Context,
        candidates: Sequence[Candidate],
        select: int | None = None,
        greedy: bool = False,
        draw: float | None = None,
    ) -> Choice:
        """Choose for one slot; `select` positions for ranked slots (default: the slot's
        `select`, capped at the number of candidates), always 1 otherwise. `greedy` returns
        the exploit choice (with the probabilities the exploring policy gives it). `draw`
        (single choice only), a uniform number in [0, 1), replaces the random one the choice
        is drawn with (a consistent draw, bandit.policies.exposure)."""
        if not candidates:
            raise ValueError("candidates: at least one is required")
        if select is not None and select < 1:
            raise ValueError(f"select: must be at least 1, got {select}")
        if self.slot.kind.ranked:
            count = min(select or self.slot.select, len(candidates))
        else:
            if select not in (None, 1):
                raise ValueError(f"select: a slot of kind {self.slot.kind} chooses exactly one")
            count = 1
            if not greedy and (draw is not None or self._floored_pmf(candidates)):
                return self._drawn(context, candidates, draw)
        if not greedy and self.slot.kind.ranked and self.exploration_floor > 0:
            return self._drawn_ranking(context, candidates, count)
        return self._decide(context, candidates, count, greedy)

    @property
    def exploration_floor(self) -> float:
        """The share of each position's pmf spread evenly over its candidates (0: none):
        `exploration.floor`, or a boost's while one lasts, for every policy but the
        editorial default."""
        if not self.floored:
            return 0.0
        boost = self.boost
        if boost is not None and self.examples_learned < boost.until:
            return max(self.slot.exploration.floor, boost.floor)
        return self.slot.exploration.floor

    def restore_boost(self, boost_floor: float, boost_until: int) -> None:
        """Take back a boost saved beside the model, if it lasts past what was learned."""
        if boost_until > self.examples_learned:
            self.boost = Boost(boost_floor, boost_until)

    def _floored_pmf(self, candidates: Sequence[Candidate]) -> bool:
        """Whether a single choice must be drawn from the whole (floored) pmf."""
        return self.exploration_floor > 0 or self._floor(candidates) > 0

    def _floor(self, candidates: Sequence[Candidate]) -> float:
        """The exposure floor that applies to these candidates (0: none)."""
        floor = self.slot.exposure.floor if self.floored else 0.0
        return floor if floor > 0 and any(c.floor for c in candidates) else 0.0

    def _drawn(
        self, context: Context, candidates: Sequence[Candidate], draw: float | None
    ) -> Choice:
        """One choice drawn from the pmf `action_probabilities` gives (floored), with `draw`
        or a fresh uniform: the path of the exposure options, which need the whole pmf."""
        pmf = self.action_probabilities(context, candidates).tolist()
        index, probability = sample_index(pmf, self.rng, draw)
        default = default_share(candidates, range(len(candidates)), pmf)
        return Choice((candidates[index].id,), (probability,), index != argmax(pmf), default)

    def _drawn_ranking(
        self, context: Context, candidates: Sequence[Candidate], count: int
    ) -> Choice:
        """A ranking drawn position by position, each from the pmf `action_probabilities`
        gives after the rows placed above it (with the exploration floor)."""
        placed: list[int] = []
        probabilities: list[float] = []
        explored = False
        for _ in range(count):
            pmf = self.action_probabilities(context, candidates, placed).tolist()
            index, probability = sample_index(pmf, self.rng)
            explored = explored or index != argmax(pmf)
            placed.append(index)
            probabilities.append(probability)
        chosen = tuple(candidates[i].id for i in placed)
        return Choice(chosen, tuple(probabilities), explored)

    def learn(self, event: RewardedEvent) -> bool:
        """Update from one rewarded event; returns False when the event is not for learning
        (never impressed, or a control decision while `learn_control` is off)."""
        if not event.impressed or (event.group == "control" and not self.slot.learn_control):
            return False
        self._learn(event)
        self.examples_learned += 1
        detector = self.detector
        if detector is not None and event.group == "treatment" and detector.observe(event.reward):
            watch = self.slot.change_detection
            self.changes_detected += 1
            self.boost = Boost(watch.boost_floor, self.examples_learned + watch.boost_events)
        return True

    def action_probabilities(
        self,
        context: Context,
        candidates: Sequence[Candidate],
        placed: Sequence[int] = (),
        greedy: bool = False,
    ) -> np.ndarray:
        """The distribution of the policy's next choice over `candidates`, given the indices
        already `placed` at earlier positions (rows; none for one choice): what replay weighs
        logged choices by. `greedy` puts all the mass on the exploit choice."""
        taken = set(placed)
        remaining = [i for i in range(len(candidates)) if i not in taken]
        if not remaining:
            raise ValueError("placed: every candidate is already placed")
        pmf = np.asarray(self._probabilities(context, candidates, placed, remaining), float)
        full = np.zeros(len(candidates))
        if greedy:
            full[remaining[int(np.argmax(pmf))]] = 1.0
            return full
        full[remaining] = with_floor(pmf / pmf.sum(), self.exploration_floor)
        floor = self._floor(candidates)
        if floor > 0 and not placed:  # single-choice slots only (SlotConfig checks)
            full = exposure.floored(full, [c.floor for c in candidates], floor)
        return full

    def pmfs_along(
        self, context: Context, candidates: Sequence[Candidate], placed: Sequence[int]
    ) -> list[np.ndarray]:
        """Its pmf at each position of `placed` (candidate indices), given the ones above."""
        return [
            self.action_probabilities(context, candidates, placed[:k]) for k in range(len(placed))
        ]

    def logged_choice_probabilities(self, event: DecisionEvent) -> list[float]:
        """What this policy gives each of `event`'s logged choices, position by position,
        given the ones logged above it: to compare with the probabilities the event logged."""
        placed = event.chosen_indices()
        pmfs = self.pmfs_along(event.context, event.candidates, placed)
        return [float(pmf[index]) for pmf, index in zip(pmfs, placed, strict=True)]

    @abc.abstractmethod
    def _probabilities(
        self,
        context: Context,
        candidates: Sequence[Candidate],
        placed: Sequence[int],
        remaining: list[int],
    ) -> Sequence[float]:
        """Unnormalised probabilities over `remaining` (candidate indices) at the position
        after the `placed` ones."""

    @abc.abstractmethod
    def _decide(
        self, context: Context, candidates: Sequence[Candidate], count: int, greedy: bool
    ) -> Choice: ...

    @abc.abstractmethod
    def _learn(self, event: RewardedEvent) -> None: ...

    @abc.abstractmethod
    def to_bytes(self) -> bytes:
        """The learned model, for the model store (which keeps `examples_learned` beside it)."""

    @classmethod
    @abc.abstractmethod
    def from_bytes(cls, slot: SlotConfig, state: bytes) -> Policy:
        """Rebuild a policy saved by `to_bytes` under the same slot config."""

    def close(self) -> None:  # noqa: B027 - only policies with native resources override it
        """Release native resources (VW workspaces); the policy is unusable afterwards."""


def make_rng(seed: int | None) -> np.random.Generator:
    """A seeded generator; `None` draws fresh entropy so replicas don't explore in lockstep."""
    return np.random.default_rng(seed)


def sample_index(
    pmf: Sequence[float], rng: np.random.Generator, draw: float | None = None
) -> tuple[int, float]:
    """Draw an index from `pmf` (renormalised) by its inverse CDF at `draw` (default: a
    fresh uniform from `rng`) and return it with its exact probability."""
    cumulative = list(itertools.accumulate(pmf))
    total = cumulative[-1]
    assert total > 0, "a pmf must have positive mass"
    index = bisect.bisect_right(cumulative, (rng.random() if draw is None else draw) * total)
    index = min(index, len(cumulative) - 1)
    while pmf[index] <= 0:  # float edge: never return a zero-probability index
        index -= 1
    return index, pmf[index] / total


def with_floor(pmf: np.ndarray, share: float) -> np.ndarray:
    """`pmf` mixed with the uniform pmf over its entries: `share` of the mass spread evenly,
    so each of n entries keeps at least share / n, whatever the policy thinks of it."""
    if share <= 0:
        return pmf
    return (1.0 - share) * pmf + share / len(pmf)


def argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def default_order(candidates: Sequence[Candidate]) -> list[int]:
    """Candidate indices, the ones marked default first, each group in the order given."""
    marked = [i for i, c in enumerate(candidates) if c.default]
    return marked + [i for i, c in enumerate(candidates) if not c.default]


def default_share(
    candidates: Sequence[Candidate], remaining: Sequence[int], pmf: Sequence[float]
) -> float:
    """The share of `pmf` (over `remaining`, candidate indices) on the editorial default."""
    first = default_order(candidates)[0]
    total = float(sum(pmf))
    if first not in remaining or total <= 0:
        return 0.0
    return min(1.0, float(pmf[list(remaining).index(first)]) / total)


def default_first(
    candidates: Sequence[Candidate], remaining: Sequence[int], epsilon: float
) -> list[float]:
    """A pmf over `remaining` (candidate indices): `epsilon` spread evenly, the rest on the
    first of them in the editorial default order."""
    first = next(i for i in default_order(candidates) if i in set(remaining))
    share = epsilon / len(remaining)
    return [share + (1.0 - epsilon) * (i == first) for i in remaining]
