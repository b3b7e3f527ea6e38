"""A slot's replay log as numpy arrays: one round per logged choice.

A single-choice slot (artwork, hero) has one round per event. A `rows` event has one round
per position: the choice of that position's row among the rows not placed before it, with
the logged propensity conditional on those earlier rows. Targets and reward models work on
rounds alike; estimators weight a position's round by the rows above it too
(`prefix_product`), so that it values the target's ranking, not the logger's prefix.
Rounds of one event are consecutive, in position order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from bandit.contracts.events import Candidate, Features, RewardedEvent


@dataclass(frozen=True)
class Ragged:
    """A list of ints per event, as one array and each event's offsets into it (how Arrow
    stores a list column), so a million events are two arrays, not a million lists."""

    offsets: np.ndarray  # (events + 1,)
    values: np.ndarray

    @classmethod
    def of(cls, lists: list[list[int]]) -> Ragged:
        lengths = np.asarray([len(x) for x in lists], dtype=np.int64)
        flat = [value for x in lists for value in x]
        return cls(np.concatenate(([0], np.cumsum(lengths))), np.asarray(flat, dtype=np.int64))

    def __getitem__(self, event: int) -> np.ndarray:
        return self.values[self.offsets[event] : self.offsets[event + 1]]

    def first(self, missing: int) -> np.ndarray:
        """Each event's first value, `missing` for an empty list."""
        empty = self.offsets[1:] == self.offsets[:-1]
        if not len(self.values):
            return np.full(len(empty), missing, dtype=np.int64)
        picked = self.values[np.minimum(self.offsets[:-1], len(self.values) - 1)]
        return np.where(empty, missing, picked)


@dataclass
class Rounds:
    slot: str
    events: Sequence[RewardedEvent]  # a Parquet log's are decoded only when asked for
    event_index: np.ndarray  # (n,) the round's event in `events`
    position: np.ndarray  # (n,) 0 for single-choice slots
    chosen: np.ndarray  # (n,) the logged candidate's index in its event's candidates
    propensity: np.ndarray  # (n,) the logged (conditional) probability of that choice
    reward: np.ndarray  # (n,) the reward of that position
    width: int  # the most candidates of any event: the columns of per-action arrays
    # per event, so that the baselines' probabilities need no decoded event:
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # candidates
    defaults: Ragged = field(default_factory=lambda: Ragged.of([]))  # indices marked default
    floored: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # any `floor`

    @classmethod
    def from_events(cls, slot: str, rewarded: list[RewardedEvent]) -> Rounds:
        event_index, position, chosen, propensity, reward = [], [], [], [], []
        for i, event in enumerate(rewarded):
            for j, (index, probability, value) in enumerate(
                zip(event.chosen_indices(), event.probabilities, event.rewards, strict=True)
            ):
                event_index.append(i)
                position.append(j)
                chosen.append(index)
                propensity.append(probability)
                reward.append(value)
        return cls(
            slot=slot,
            events=rewarded,
            event_index=np.asarray(event_index, dtype=np.int64),
            position=np.asarray(position, dtype=np.int64),
            chosen=np.asarray(chosen, dtype=np.int64),
            propensity=np.asarray(propensity, dtype=float),
            reward=np.asarray(reward, dtype=float),
            width=max((len(e.candidates) for e in rewarded), default=0),
            sizes=np.asarray([len(e.candidates) for e in rewarded], dtype=np.int64),
            defaults=Ragged.of(
                [[i for i, c in enumerate(e.candidates) if c.default] for e in rewarded]
            ),
            floored=np.asarray([any(c.floor for c in e.candidates) for e in rewarded], bool),
        )

    def __len__(self) -> int:
        return len(self.event_index)

    def placed(self, i: int) -> list[int]:
        """Candidate indices placed at positions before round `i`'s, in its event."""
        event = self.events[self.event_index[i]]
        result: list[int] = event.chosen_indices()[: self.position[i]]
        return result

    def prefix_product(self, ratio: np.ndarray) -> np.ndarray:
        """(n,) for each round, the product of `ratio` over the rounds of its event at earlier
        positions (1 at the first position and for single-choice slots)."""
        prefix = np.ones(len(self))
        later = np.flatnonzero(self.position > 0)
        assert np.all(self.event_index[later - 1] == self.event_index[later]) and np.all(
            self.position[later - 1] == self.position[later] - 1
        ), "prefix_product needs whole events, positions in order"
        for position in range(1, int(self.position.max(initial=0)) + 1):
            at = later[self.position[later] == position]
            prefix[at] = prefix[at - 1] * ratio[at - 1]
        return prefix

    def candidate_mask(self, keep: Callable[[Candidate], bool]) -> np.ndarray:
        """(n, width) `keep` of each round's candidates (False past an event's last one)."""
        out = np.zeros((len(self), self.width), dtype=bool)
        for i, event_index in enumerate(self.event_index.tolist()):
            candidates = self.events[event_index].candidates
            out[i, : len(candidates)] = [keep(c) for c in candidates]
        return out

    def unsupported_share(self, pmf: np.ndarray) -> float:
        """The share of `pmf`'s mass (n, width) on candidates that no round here chose: what
        no estimator can value from this log."""
        pairs = zip(self.event_index.tolist(), self.chosen.tolist(), strict=True)
        chosen = {self.events[e].candidates[c].id for e, c in pairs}
        never = self.candidate_mask(lambda c: c.id not in chosen)
        return float(pmf[never].sum() / max(pmf.sum(), 1e-12))

    def choices_left(self) -> np.ndarray:
        """(n,) how many candidates round i could choose from (those not placed before it)."""
        result: np.ndarray = self.sizes[self.event_index] - self.position
        return result

    def split(self, fraction: float) -> tuple[Rounds, Rounds]:
        """The first `fraction` of events (time order) and the rest, rounds kept whole."""
        cut = round(len(self.events) * fraction)
        return self._events_slice(0, cut), self._events_slice(cut, len(self.events))

    def select(self, mask: np.ndarray) -> Rounds:
        """The rounds where `mask` is True (events list kept, indices unchanged)."""
        return Rounds(
            slot=self.slot,
            events=self.events,
            event_index=self.event_index[mask],
            position=self.position[mask],
            chosen=self.chosen[mask],
            propensity=self.propensity[mask],
            reward=self.reward[mask],
            width=self.width,
            sizes=self.sizes,
            defaults=self.defaults,
            floored=self.floored,
        )

    def _events_slice(self, start: int, stop: int) -> Rounds:
        part = Rounds.from_events(self.slot, list(self.events[start:stop]))
        part.width = self.width
        return part

    @staticmethod
    def check_segment(feature: str) -> None:
        """A feature to segment by: `user.<name>`, `request.<name>` or `group`."""
        scope, _, name = feature.partition(".")
        if feature != "group" and (scope not in ("user", "request") or not name):
            raise ValueError(f"segment: {feature!r} is not user.<name>, request.<name> or group")

    def segment(self, feature: str) -> np.ndarray:
        """Each round's value of a context feature (`user.taste`, `request.device`) or of
        `group`, as strings; rounds without it are "(none)"."""
        self.check_segment(feature)
        scope, _, name = feature.partition(".")
        values: list[str] = []
        for event in self.events:
            if feature == "group":
                values.append(event.group)
                continue
            value = context_features(event, scope).get(name)
            values.append("(none)" if value is None else str(value))
        result: np.ndarray = np.asarray(values, dtype=object)[self.event_index]
        return result


def context_features(event: RewardedEvent, scope: str) -> Features:
    """The user or the request features of an event's context (`scope` "user" or "request")."""
    return event.context.user if scope == "user" else event.context.request
