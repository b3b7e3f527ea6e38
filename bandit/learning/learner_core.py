"""The learner's pure core: Kafka records in, learned policies and output events out.

It holds one `RewardJoin` per assigned partition and one policy per slot, decodes each
record strictly (bad input becomes a dead letter, never an exception), remembers how far
each partition's two inputs were read, and turns all of that into a `Checkpoint` and back.
It opens no socket and no file: `loop` feeds it from Kafka, tests feed it directly.
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Unpack

import msgspec

from bandit.config import Config, policy_slots, shadow_key
from bandit.contracts import events
from bandit.contracts.events import MAX_ID
from bandit.contracts.slots import SlotConfig
from bandit.learning.checkpoint import Checkpoint, CheckpointError, PartitionState, SlotState
from bandit.learning.join import CLOSE_CHUNK, DeadLetter, JoinResult, RewardJoin
from bandit.learning.segments import MemorySegments, Segments
from bandit.learning.tuning import Held, Tuned, TunedPolicies, tuned_slot
from bandit.measurement.lift import RecentTallies
from bandit.measurement.tallies import SlotTallies, merge, tally
from bandit.policies import Policy, policy_class

log = logging.getLogger(__name__)


class Input(Enum):
    DECISIONS = "decisions"
    FEEDBACK = "feedback"


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka message as the learner sees it."""

    input: Input
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a tombstone


@dataclass(frozen=True, slots=True)
class Rewarded:
    """A rewarded event to write, encoded as soon as it is learned: a step holds thousands
    when it catches up, and decoded each is about ten times its encoding."""

    partition: int  # the input's: the rewarded topic is co-partitioned with the inputs
    decision_id: str
    slot: str
    group: str
    reward: float
    value: bytes  # the event, JSON


@dataclass
class StepOutput:
    """What processing produced: events to write, and counts for the metrics."""

    rewarded: list[Rewarded] = field(default_factory=list)
    dead_letters: list[events.DeadLetterEvent] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)  # join outcome -> count
    learned: Counter[str] = field(default_factory=Counter)  # slot -> examples learned
    # slot -> for a sample of treatment decisions, the learning policy's probability of what
    # was logged over the logged one (the product over positions for rows), before learning
    # it: how far the policy has moved from what logged its data (`WEIGHT_SAMPLE`)
    weights: dict[str, list[float]] = field(default_factory=dict)


WEIGHT_SAMPLE = 16  # one treatment decision in this many, by decision id: about 1 µs/event


def weight_sampled(event: events.RewardedEvent) -> bool:
    """Whether the event is in the sample behind the importance-weight gauges: treatment
    decisions, one in WEIGHT_SAMPLE by decision id (every learner samples the same ones)."""
    sampled = zlib.crc32(event.decision_id.encode()) % WEIGHT_SAMPLE == 0
    return sampled and event.group == "treatment"


def weight_of(policy: Policy, event: events.RewardedEvent) -> float:
    """The policy's over the logger's probability of the logged choice (all positions)."""
    weight = 1.0
    for mine, logged in zip(
        policy.logged_choice_probabilities(event), event.probabilities, strict=True
    ):
        weight *= mine / logged
    return weight


class LearnerCore(TunedPolicies):
    """Joins and learns for the partitions assigned to this member."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float],
        segments: Callable[[int], Segments] | None = None,
        **held: Unpack[Held],
    ):
        self.config = config
        self.clock = clock  # epoch seconds, for the times events and checkpoints are stamped
        # Per partition, where its join keeps the decisions it is not working on (on disk in
        # a learner process: learner.segment_files; in memory here by default).
        self.segments = segments or _memory_segments()
        self.topics = (config.kafka.topics.decisions, config.kafka.topics.feedback)
        # Only the slots this learner owns (another group learns and publishes the others),
        # keyed by slot and by `shadow_key(slot)` for a slot's shadow policy, which learns
        # from the same events (its versions are published beside the slot's).
        self._hold(learned_keys(config), held)
        self.joins: dict[int, RewardJoin] = {}
        # Per partition, the next offset to read from (decisions, feedback).
        self.offsets: dict[int, list[int]] = {}
        # Per partition, the lift report's sums of its rewarded events: they move and roll
        # back with the partition, so they count each rewarded event exactly once.
        self.tallies: dict[int, SlotTallies] = {}
        # Partitions restored from a checkpoint but not (yet) assigned again: their states
        # ride along in every checkpoint until an owner takes them, so a crash before the
        # group assigns them cannot lose their open joins.
        self.pending: dict[int, PartitionState] = {}
        # The recent window of the lift sums that the learner's metrics watch, if any: fed
        # here so that each event's calibration terms are computed once.
        self.recent: RecentTallies | None = None

    # -------------------------------------------------------------------- partitions
    def assign(self, partition: int, state: PartitionState | None) -> None:
        """Take `partition` over from its newest `state`, else start afresh (offsets -1: not
        read yet, the consumer starts at the group's committed offset)."""
        config = self.config
        settings = (config.learner.allowed_lateness_s, config.learned_slots, config.reports_unowned)
        segments = self.segments(partition)
        self.pending.pop(partition, None)
        if state is None:
            self.joins[partition] = RewardJoin(config.slots, *settings, segments)
            self.offsets[partition] = [-1, -1]
            self.tallies[partition] = {}
        else:
            join = RewardJoin.restore(config.slots, state.join, *settings, segments)
            self.joins[partition] = join
            self.offsets[partition] = [state.decisions_offset, state.feedback_offset]
            self.tallies[partition] = merge([state.lift])

    def revoke(self, partition: int) -> PartitionState:
        """Give `partition` up; returns its state for the next owner."""
        state = self.partition_state(partition)
        del self.joins[partition], self.offsets[partition], self.tallies[partition]
        return state

    def partition_state(self, partition: int) -> PartitionState:
        """A copy: the live state goes on changing."""
        decisions_offset, feedback_offset = self.offsets[partition]
        join = self.joins[partition]
        return PartitionState(
            decisions_offset,
            feedback_offset,
            join.snapshot(),
            merge([self.tallies[partition]]),
            join.watermark,
        )

    def slot_config(self, slot: str) -> SlotConfig:
        """What `slot`'s policy runs: its configured settings with the tuned ones over them."""
        return tuned_slot(slot, self.config.slots[slot], self.tuned(slot).overrides)

    def is_open(self, decision_id: str) -> bool:
        """Whether some assigned partition still waits to close this decision's window."""
        return any(join.is_open(decision_id) for join in self.joins.values())

    @property
    def open_decisions(self) -> int:
        return sum(join.open_decisions for join in self.joins.values())

    @property
    def behind(self) -> bool:
        """Some partition has windows due that its next step closes (see RewardJoin.behind)."""
        return any(join.behind for join in self.joins.values())

    # -------------------------------------------------------------------- records
    def process(self, records: Iterable[Record], out: StepOutput) -> None:
        """Join, learn and collect outputs for `records`, each partition's in log order.
        A partition's join results are collected once for the batch (per record, the
        allocation and bookkeeping cost as much as a join)."""
        results: dict[int, JoinResult] = {}
        for record in records:
            offsets = self.offsets.get(record.partition)
            if offsets is None:
                continue  # revoked while its records were in flight: its next owner reads them
            index = 0 if record.input is Input.DECISIONS else 1
            if record.offset < offsets[index]:
                continue  # read before the checkpoint this state came from: already joined
            offsets[index] = record.offset + 1
            join = self.joins[record.partition]
            result = results.get(record.partition)
            if result is None:
                result = results[record.partition] = JoinResult()
                join.refill()
            try:
                if record.input is Input.DECISIONS:
                    join.add_decision(events.decode(record.value, events.DecisionEvent), result)
                else:
                    join.add_feedback(events.decode(record.value, events.FeedbackEvent), result)
            except events.EventError as exc:
                if not self.config.reports_unowned:
                    out.outcomes["not_owned"] += 1  # the first slot's owner reports it
                    continue
                code, reason = _why_malformed(record, exc)
                out.dead_letters.append(self._dead_letter(record, code, reason))
                out.outcomes["deadletter"] += 1
            if result.closed >= CLOSE_CHUNK:  # learned and encoded now; more close into a new one
                self._collect(record.partition, result, out)
                results[record.partition] = JoinResult()
        for partition, result in results.items():
            self._collect(partition, result, out)

    def advance_idle(
        self, partition: int, decisions_idle: bool, feedback_idle: bool, now: float, out: StepOutput
    ) -> None:
        """Move a partition's event time on when an input has nothing more to read: the other
        input's time then leads, or, with both read to the end, the wall clock."""
        join = self.joins[partition]
        watermark = join.watermark
        if decisions_idle and feedback_idle:
            if self.config.learner.idle_advance:
                watermark = now
        elif feedback_idle:
            watermark = join.decisions_time
        elif decisions_idle:
            watermark = join.feedback_time
        if watermark > join.watermark or join.behind:  # behind: more windows are due
            result = join.advance(watermark)
            self._collect(partition, result, out)
            while result.closed >= CLOSE_CHUNK and join.behind:  # the batch may close more
                result = join.close_due()
                self._collect(partition, result, out)

    def _collect(self, partition: int, result: JoinResult, out: StepOutput) -> None:
        out.outcomes["duplicate"] += result.duplicates
        out.outcomes["not_owned"] += result.not_owned
        out.outcomes["not_impressed"] += len(result.not_impressed)
        for dead in result.dead_letters:
            out.outcomes["late" if dead.code == "late" else "deadletter"] += 1
            out.dead_letters.append(self._join_dead_letter(partition, dead))
        tally(result.rewarded, into=self.tallies[partition], recent=self.recent)
        for event in result.rewarded:
            out.outcomes["rewarded"] += 1
            out.rewarded.append(
                Rewarded(partition, event.decision_id, event.slot, event.group, event.reward,
                         msgspec.json.encode(event))
            )  # fmt: skip
            policy = self.policies.get(event.slot)
            if policy is None:
                continue  # a join-only member: a rewarded learner learns it
            try:
                if weight_sampled(event):
                    out.weights.setdefault(event.slot, []).append(weight_of(policy, event))
                learned = policy.learn(event)
            except Exception as exc:  # VW's errors vary; one bad example must not stop learning
                reason = f"the policy could not learn it: {type(exc).__name__}: {exc}"
                out.dead_letters.append(
                    self._join_dead_letter(partition, DeadLetter(event, "unlearnable", reason))
                )
                continue
            if learned:
                out.learned[event.slot] += 1
                self.learned_here[event.slot] += 1
            shadow = self.policies.get(shadow_key(event.slot))
            try:
                if shadow is not None and shadow.learn(event):
                    out.learned[shadow_key(event.slot)] += 1
                    self.learned_here[shadow_key(event.slot)] += 1
            except Exception as exc:  # the shadow's failure must not cost the live policy
                log.warning("slot %s: the shadow could not learn %s: %s", event.slot,
                            event.decision_id, exc)  # fmt: skip

    def _dead_letter(self, record: Record, code: str, reason: str) -> events.DeadLetterEvent:
        return events.DeadLetterEvent.carrying(
            record.value,
            code=code,
            reason=reason[:2000],
            topic=self.topics[0 if record.input is Input.DECISIONS else 1],
            partition=record.partition,
            offset=record.offset,
            key=None if record.key is None else record.key[:MAX_ID].decode(errors="replace"),
            ts=self.clock(),
        )

    def _join_dead_letter(self, partition: int, dead: DeadLetter) -> events.DeadLetterEvent:
        is_decision = isinstance(dead.event, events.DecisionEvent)
        return events.DeadLetterEvent(
            code=dead.code,
            reason=dead.reason,
            topic=self.topics[0 if is_decision else 1],
            partition=partition,
            offset=None,
            key=dead.event.decision_id,
            payload=msgspec.json.encode(dead.event).decode(),
            ts=self.clock(),
        )

    # -------------------------------------------------------------------- checkpoints
    def checkpoint(self, seq: int, member: str) -> Checkpoint:
        """Everything needed to continue exactly here: models, offsets, open joins."""
        slots = {
            slot: SlotState(
                policy_type=policy.type_name,
                model=policy.to_bytes(),
                examples_learned=policy.examples_learned,
                learned_here=self.learned_here[slot],
                tuning_revision=self.tuned(slot).revision,
                tuned=list(self.tuned(slot).overrides),
                boost_floor=policy.boost.floor if policy.boost else 0.0,
                boost_until=policy.boost.until if policy.boost else 0,
            )
            for slot, policy in self.policies.items()
        }
        return Checkpoint(
            seq=seq,
            created_at=self.clock(),
            member=member,
            group_id=self.config.learner.group_id,
            topics=self.topics,
            owned=list(self.config.learner.slots),
            slots=slots,
            partitions={
                **self.pending,
                **{p: self.partition_state(p) for p in sorted(self.joins)},
            },
        )

    @classmethod
    def from_checkpoint(
        cls,
        config: Config,
        checkpoint: Checkpoint,
        fallback: Mapping[str, Policy] | None = None,
        fallback_tuning: Mapping[str, Tuned] | None = None,
        *,
        clock: Callable[[], float],
        segments: Callable[[int], Segments] | None = None,
    ) -> LearnerCore:
        """The core as it was at `checkpoint` (partitions are assigned separately). A slot
        whose policy no longer loads under the current config starts from `fallback`
        (learned under `fallback_tuning`)."""
        policies, restored = restore_policies(learned_keys(config), checkpoint)
        tuning = {**(fallback_tuning or {}), **restored}
        for slot, policy in (fallback or {}).items():
            if slot in policies:
                policy.close()
            else:
                policies[slot] = policy
        learned = {slot: state.learned_here for slot, state in checkpoint.slots.items()}
        core = cls(
            config, clock=clock, segments=segments, policies=policies, learned_here=learned,
            tuning=tuning,
        )  # fmt: skip
        core.pending = dict(checkpoint.partitions)
        return core


def _memory_segments() -> Callable[[int], Segments]:
    """Each partition's segments in memory, kept across revoke and assign."""
    stores: dict[int, MemorySegments] = {}
    return lambda partition: stores.setdefault(partition, MemorySegments())


def restore_policies(
    keys: Mapping[str, SlotConfig], checkpoint: Checkpoint
) -> tuple[dict[str, Policy], dict[str, Tuned]]:
    """The policies of `keys` as `checkpoint` holds them, with the tuned settings each
    learned under. One whose model or tuned settings the current config no longer takes is
    left out (logged), to start over; a model file that cannot be read (a full disk) raises
    `CheckpointError`, as starting over would lose it."""
    policies: dict[str, Policy] = {}
    tuning: dict[str, Tuned] = {}
    for slot, configured in keys.items():
        state = checkpoint.slots.get(slot)
        if state is None or state.policy_type != configured.policy:
            continue
        try:
            slot_config = tuned_slot(slot, configured, state.tuned)
        except ValueError as exc:  # the config changed under the tuned settings
            log.warning("slot %s: tuned settings no longer apply (%s); starting over", slot, exc)
            continue
        try:
            policy = policy_class(slot_config).from_bytes(slot_config, state.model)
        except OSError as exc:  # e.g. a full disk: starting over would lose the model
            raise CheckpointError(
                f"slot {slot}: cannot load the checkpointed model ({exc})"
            ) from exc
        except Exception as exc:  # a changed VW config may refuse the old model
            log.warning("slot %s: checkpointed model does not load (%s); starting over", slot, exc)
            continue
        policy.examples_learned = state.examples_learned
        policy.restore_boost(state.boost_floor, state.boost_until)
        policies[slot] = policy
        tuning[slot] = Tuned(state.tuning_revision, tuple(state.tuned))
    return policies, tuning


def learned_keys(config: Config) -> dict[str, SlotConfig]:
    """The policies a member learns, by key: none for a join-only member."""
    return policy_slots(config, config.learned_slots) if config.learner.learns else {}


def _why_malformed(record: Record, exc: events.EventError) -> tuple[str, str]:
    """A message for the other topic is `wrong_topic`, one of a newer schema version
    `newer_schema`; anything else that fails is malformed."""
    if isinstance(exc, events.NewerSchemaError):
        return "newer_schema", str(exc)
    try:
        event = events.decode(record.value)
    except events.EventError:
        return "malformed", str(exc)
    expected = "a decision" if record.input is Input.DECISIONS else "a feedback event"
    return "wrong_topic", f"expected {expected}, got {event.__struct_config__.tag}"
