"""The running sums behind the lift report (bandit.measurement.lift), kept per slot, period
and group: decisions, reward and outcomes summed into `UNIT_BUCKETS` buckets of people (a
person's bucket is a fixed hash of their `user_hash`; an anonymous decision is hashed by its
id), the default policy's weighted terms for the calibration check, and the shadow's. Sums
are exact and add up across partitions and learners, so the report is constant-time
however long the log."""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec
import numpy as np

from bandit.contracts.events import OUTCOMES, Outcomes, RewardedEvent
from bandit.measurement import calibration
from bandit.measurement.sequential import (
    UNDEFINED,
    ConfidenceSequence,
    decisions_to_detect,
    relative_tau,
    sequence,
)
from bandit.measurement.stats import Rate, ratio_rate

UNIT_BUCKETS = 512
GROUPS = ("treatment", "control")


def unit_bucket(event: RewardedEvent) -> int:
    """The bucket of the randomised unit: the person, or the decision when anonymous."""
    unit = event.user_hash if event.user_hash is not None else f"anonymous:{event.decision_id}"
    return zlib.crc32(unit.encode()) % UNIT_BUCKETS


def zeros() -> list[float]:
    return [0.0] * UNIT_BUCKETS


def _added(mine: list[float], theirs: list[float]) -> list[float]:
    if len(theirs) != UNIT_BUCKETS:
        raise ValueError(f"a tally of {len(theirs)} buckets, not {UNIT_BUCKETS}")
    return [a + b for a, b in zip(mine, theirs, strict=True)]


class _BucketSums(msgspec.Struct):
    """Per-bucket sums, every field a list of UNIT_BUCKETS floats, merged field by field."""

    def merge(self, other: _BucketSums) -> None:
        for name in self.__struct_fields__:
            setattr(self, name, _added(getattr(self, name), getattr(other, name)))


class DefaultSums(_BucketSums):
    """The default policy's terms (`calibration.DefaultTerms`) summed per bucket, with the
    decisions they come from and the squares of the page weights."""

    decisions: list[float] = msgspec.field(default_factory=zeros)
    reward: list[float] = msgspec.field(default_factory=zeros)
    first_weight: list[float] = msgspec.field(default_factory=zeros)
    page_weight: list[float] = msgspec.field(default_factory=zeros)
    page_weight_square: list[float] = msgspec.field(default_factory=zeros)
    mass: list[float] = msgspec.field(default_factory=zeros)
    mass_square: list[float] = msgspec.field(default_factory=zeros)

    def add(self, bucket: int, terms: calibration.DefaultTerms) -> None:
        self.decisions[bucket] += 1
        self.reward[bucket] += terms.reward
        self.first_weight[bucket] += terms.first_weight
        self.page_weight[bucket] += terms.page_weight
        self.page_weight_square[bucket] += terms.page_weight**2
        self.mass[bucket] += terms.mass
        self.mass_square[bucket] += terms.mass_square


class ShadowSums(_BucketSums):
    """The decisions that logged a shadow's pmfs, per bucket: their reward, and the reward
    weighted by the shadow's probability over the live one's (a page's product). The
    shadow's gain over the live policy is the mean of reward * (weight - 1)."""

    decisions: list[float] = msgspec.field(default_factory=zeros)
    reward: list[float] = msgspec.field(default_factory=zeros)
    weighted: list[float] = msgspec.field(default_factory=zeros)

    def add(self, bucket: int, reward: float, weight: float) -> None:
        self.decisions[bucket] += 1
        self.reward[bucket] += reward
        self.weighted[bucket] += reward * weight


@dataclass(frozen=True)
class ShadowGain:
    """A shadow policy's value off-policy (IPS) against the live policy's on the decisions
    that logged it, and the difference, with fixed-horizon 95% intervals clustered by bucket
    of people, and the gain's always-valid sequence (what promotion reads: an operator may
    ask after every checkpoint), with the decisions it would need to exclude 0 as it is."""

    live: Rate
    shadow: Rate
    gain: Rate  # shadow - live
    sequence: ConfidenceSequence = UNDEFINED
    needed: float = math.inf

    @property
    def significant(self) -> bool:
        return self.sequence.low > 0


def shadow_gain(tally: GroupTally) -> ShadowGain:
    sums = tally.shadow
    gain = np.asarray(sums.weighted) - np.asarray(sums.reward)
    live = bucket_rate(sums.reward, sums.decisions)
    difference = bucket_rate(gain.tolist(), sums.decisions)
    tau = relative_tau(live.value)
    return ShadowGain(
        live=live,
        shadow=bucket_rate(sums.weighted, sums.decisions),
        gain=difference,
        sequence=sequence(difference.value, difference.std_error, tau),
        needed=decisions_to_detect(
            difference.value, difference.std_error, difference.impressions, tau
        ),
    )


_OUTCOME_SUMS = frozenset(("decisions", *OUTCOMES))  # a tally's `outcomes` keys


class GroupTally(msgspec.Struct):
    """One group's decisions and reward, summed per bucket of people; the default policy's
    terms over all its decisions and over those where the log supports the default
    (`calibration`); the outcomes of the decisions that logged them (guardrails). Tallies
    written before a field existed read it as empty."""

    decisions: list[int] = msgspec.field(default_factory=lambda: [0] * UNIT_BUCKETS)
    reward: list[float] = msgspec.field(default_factory=zeros)
    default: DefaultSums = msgspec.field(default_factory=DefaultSums)
    supported: DefaultSums = msgspec.field(default_factory=DefaultSums)
    # outcome -> per bucket: the decisions that logged outcomes, then each outcome's sum
    outcomes: dict[str, list[float]] = msgspec.field(default_factory=dict)
    shadow: ShadowSums = msgspec.field(default_factory=ShadowSums)

    def add(
        self,
        bucket: int,
        reward: float,
        default: calibration.DefaultTerms | None = None,
        outcomes: Outcomes | None = None,
    ) -> None:
        self.decisions[bucket] += 1
        self.reward[bucket] += reward
        if default is not None:
            self.default.add(bucket, default)
            if default.supported:
                self.supported.add(bucket, default)
        if outcomes is not None:
            sums = self.outcomes
            if not sums.keys() >= _OUTCOME_SUMS:  # the first outcomes it sees
                for name in _OUTCOME_SUMS:
                    sums.setdefault(name, zeros())
            sums["decisions"][bucket] += 1.0
            for name in OUTCOMES:
                sums[name][bucket] += getattr(outcomes, name)

    def merge(self, other: GroupTally) -> None:
        if len(other.decisions) != UNIT_BUCKETS:
            raise ValueError(f"a tally of {len(other.decisions)} buckets, not {UNIT_BUCKETS}")
        self.decisions = [a + b for a, b in zip(self.decisions, other.decisions, strict=True)]
        self.reward = _added(self.reward, other.reward)
        self.default.merge(other.default)
        self.supported.merge(other.supported)
        for name, theirs in other.outcomes.items():
            self.outcomes[name] = _added(self.outcomes.get(name, zeros()), theirs)
        self.shadow.merge(other.shadow)

    @property
    def total(self) -> int:
        return sum(self.decisions)


# slot -> period -> group -> tally: what one partition (or a whole log) contributes. A period
# is the holdout fraction the decisions were logged under (`repr` of it; "" when the writer
# did not log it), so a fraction changed mid-log is checked per period.
SlotTallies = dict[str, dict[str, dict[str, GroupTally]]]


def period_of(event: RewardedEvent) -> str:
    return "" if event.holdout_fraction is None else repr(event.holdout_fraction)


class PartitionTally(msgspec.Struct, frozen=True):
    """One slot's tally of one input partition, as a learner checkpointed it: what it
    publishes for the lift endpoint. `order` sorts the states of a partition: its offsets
    and its count of decisions only grow (windows closed by the clock add decisions without
    moving an offset), so a stale writer never replaces a newer tally."""

    slot: str
    partition: int
    topic: str  # the decisions topic the partition belongs to
    progress: int  # the partition's offsets, summed
    written_at: float
    periods: dict[str, dict[str, GroupTally]]

    @property
    def order(self) -> tuple[int, int]:
        return self.progress, decisions({self.slot: self.periods})


class RecentSink(Protocol):
    """Where `tally` also adds each event (bandit.measurement.lift.RecentTallies)."""

    def add(
        self,
        event: RewardedEvent,
        default: calibration.DefaultTerms | None = None,
        bucket: int | None = None,
    ) -> None: ...


def bucket_rate(
    numerators: Sequence[float],
    denominators: Sequence[float],
    units: Sequence[float] | None = None,
) -> Rate:
    """sum / sum over the buckets with decisions (`units`, default the denominators)."""
    used = np.asarray(units if units is not None else denominators, dtype=float) > 0
    num, den = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    return ratio_rate(num[used], den[used])


def tally(
    events: Iterable[RewardedEvent],
    into: SlotTallies | None = None,
    recent: RecentSink | None = None,
) -> SlotTallies:
    """Add rewarded events to per-slot, per-period, per-group tallies (a new set unless
    `into`), and to `recent` too, with each event's default terms computed once."""
    tallies: SlotTallies = {} if into is None else into
    for event in events:
        terms = calibration.default_terms(event, event.rewards)
        bucket = unit_bucket(event)
        groups = tallies.setdefault(event.slot, {}).setdefault(period_of(event), {})
        add(groups, event, terms, bucket)
        if recent is not None:
            recent.add(event, terms, bucket)
    return tallies


def add(
    groups: dict[str, GroupTally],
    event: RewardedEvent,
    default: calibration.DefaultTerms | None = None,
    bucket: int | None = None,
) -> None:
    """Add one rewarded event to its group's tally in `groups` (`default`, `bucket`: its
    default terms and unit bucket, when the caller has them already)."""
    group = groups.get(event.group)
    if group is None:
        group = groups[event.group] = GroupTally()
    if default is None:
        default = calibration.default_terms(event, event.rewards)
    if bucket is None:
        bucket = unit_bucket(event)
    group.add(bucket, event.reward, default, event.outcomes)
    weight = event.shadow_weight()
    if weight is not None:
        group.shadow.add(bucket, event.reward, weight)


def merge(parts: Iterable[SlotTallies]) -> SlotTallies:
    """The sum of several tallies (partitions, learners), as a new set."""
    total: SlotTallies = {}
    for part in parts:
        for slot, periods in part.items():
            for period, groups in periods.items():
                into = total.setdefault(slot, {}).setdefault(period, {})
                for name, group in groups.items():
                    into.setdefault(name, GroupTally()).merge(group)
    return total


def decisions(tallies: SlotTallies) -> int:
    """How many rewarded decisions the tallies hold."""
    return sum(
        g.total for periods in tallies.values() for p in periods.values() for g in p.values()
    )
