"""Learning one model per slot from the joined stream (`artbandit.rewarded`), every partition.

The join scales out: k members of a group, each joining its share of the partitions and
learning nothing (`learner.learns = false`), write rewarded events. One rewarded learner per
slot then learns from all of them, so the slot's model has seen all the traffic, as one
learner of every partition would, at the rate of decoding and learning alone.

The rewarded topic is at least once: a join member restarted from its checkpoint writes
again what it wrote after it. It writes a partition's events in the order their windows
close, `(joined_at, decision_id)` strictly increasing (the join's heap order; `joined_at` is
the window's closing time, the same however the inputs interleaved), and a rewrite repeats
that order. So this core remembers, per partition, the key of the last event it learned and
passes over anything at or below it: each decision is learned once, with one key per
partition to checkpoint. That needs the rewarded topic to have as many partitions as the
inputs (each input partition's events in the same partition), which the loop checks.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Unpack

import msgspec

from bandit.config import Config, policy_slots, shadow_key
from bandit.contracts import events
from bandit.learning.checkpoint import Checkpoint, PartitionState, SlotState
from bandit.learning.learner_core import restore_policies, weight_of, weight_sampled
from bandit.learning.tuning import Held, TunedPolicies
from bandit.policies import Policy

Key = tuple[float, str]  # (joined_at, decision_id): a partition's order of rewarded events
_BEFORE_ANY: Key = (-1.0, "")


@dataclass
class Position:
    """How far one partition was read, and the last event learned from it."""

    offset: int = -1  # the next offset to read (-1: not read yet)
    last: Key = _BEFORE_ANY


class RewardedLearnerCore(TunedPolicies):
    """The policies of the owned slots (and their shadows), learning rewarded events once."""

    def __init__(
        self,
        config: Config,
        topic: str,
        *,
        clock: Callable[[], float],
        **held: Unpack[Held],
    ):
        self.config = config
        self.clock = clock  # epoch seconds, for the times events and checkpoints are stamped
        self.topic = topic
        self._hold(policy_slots(config, config.learned_slots), held)
        self.positions: dict[int, Position] = {}

    def process(
        self,
        records: Iterable[tuple[int, int, bytes | None]],
        outcomes: Counter[str],
        weights: dict[str, list[float]] | None = None,
    ) -> None:
        """Learn each (partition, offset, value) not learned before; `outcomes` counts
        learned, duplicate, not_owned, unlearnable and malformed, and `weights` gets the
        policy's importance weights of the sampled events (`weight_sampled`) by slot."""
        for partition, offset, value in records:
            position = self.positions.setdefault(partition, Position())
            if offset < position.offset:
                continue  # read before the checkpoint this state came from
            position.offset = offset + 1
            try:
                event = events.decode(value, events.RewardedEvent)
            except events.EventError:
                outcomes["malformed"] += 1  # the join wrote it checked: not ours to judge
                continue
            policy = self.policies.get(event.slot)
            if policy is None:
                outcomes["not_owned"] += 1
                continue
            key = (event.joined_at, event.decision_id)
            if key <= position.last:
                outcomes["duplicate"] += 1
                continue
            position.last = key
            if weights is not None and weight_sampled(event):
                with contextlib.suppress(Exception):  # then it is unlearnable too, counted so
                    weights.setdefault(event.slot, []).append(weight_of(policy, event))
            self._learn(event.slot, policy, event, outcomes)
            shadow = self.policies.get(shadow_key(event.slot))
            if shadow is not None:
                self._learn(shadow_key(event.slot), shadow, event, outcomes, counted=False)

    def _learn(
        self,
        key: str,
        policy: Policy,
        event: events.RewardedEvent,
        outcomes: Counter[str],
        counted: bool = True,
    ) -> None:
        try:
            learned = policy.learn(event)
        except Exception:  # VW's errors vary; one bad example must not stop learning
            outcomes["unlearnable"] += counted
            return
        if learned:
            self.learned_here[key] += 1
            outcomes["learned"] += counted

    def checkpoint(self, seq: int, member: str) -> Checkpoint:
        """The models and, per partition, the next offset and the last key learned (in a
        `PartitionState`: `decisions_offset` is the rewarded offset, `join` the key)."""
        slots = {
            key: SlotState(
                policy.type_name,
                policy.to_bytes(),
                policy.examples_learned,
                self.learned_here[key],
                self.tuned(key).revision,
                list(self.tuned(key).overrides),
            )
            for key, policy in self.policies.items()
        }
        partitions = {
            partition: PartitionState(position.offset, -1, msgspec.msgpack.encode(position.last))
            for partition, position in sorted(self.positions.items())
        }
        return Checkpoint(
            seq=seq, created_at=self.clock(), member=member,
            group_id=self.config.learner.group_id, topics=(self.topic, ""), slots=slots,
            partitions=partitions, owned=list(self.config.learner.slots),
        )  # fmt: skip

    @classmethod
    def from_checkpoint(
        cls, config: Config, topic: str, checkpoint: Checkpoint, *, clock: Callable[[], float]
    ) -> RewardedLearnerCore:
        """The core as it was at `checkpoint`; a model or tuned settings the config no
        longer takes start afresh (`restore_policies`)."""
        keys = policy_slots(config, config.learned_slots)
        policies, tuning = restore_policies(keys, checkpoint)
        learned = {key: state.learned_here for key, state in checkpoint.slots.items()}
        core = cls(
            config, topic, clock=clock, policies=policies, learned_here=learned, tuning=tuning
        )
        for partition, read in checkpoint.partitions.items():
            joined_at, decision_id = msgspec.msgpack.decode(read.join, type=tuple[float, str])
            core.positions[partition] = Position(read.decisions_offset, (joined_at, decision_id))
        return core
