"""A group member's partitions coming and going.

kafka-python calls the listener on its IO thread while the member waits inside `poll` (or
`close`), so it may use the core freely but must not block on the consumer. A revoked
partition's state is checkpointed and handed to its next owner before the group moves on;
an assigned one continues from its newest state, wherever it was written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from bandit.learning.checkpoint import PartitionState
from bandit.learning.learner_core import LearnerCore
from learner.cadence import Cadence
from learner.checkpoint_store import CheckpointStore
from learner.metrics import LearnerMetrics
from learner.process import LearnerError

log = logging.getLogger(__name__)


class Member(Protocol):
    """What a rebalance needs of the member whose partitions move."""

    core: LearnerCore
    consumer: KafkaConsumer
    checkpoints: CheckpointStore
    metrics: LearnerMetrics
    cadence: Cadence
    group_id: str
    failed: bool  # it is stopping on an error: its state may be half done
    fatal: Exception | None  # set here when a hand-over failed: the member must stop

    def checkpoint(self, in_rebalance: bool = False, final: bool = False) -> None: ...


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
    def __init__(self, member: Member):
        self.member = member

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Checkpoint first, then hand each revoked partition's state to its next owner;
        all of it before the group moves on, so the next owner finds it."""
        member = self.member
        partitions = {tp.partition for tp in revoked} & set(member.core.joins)
        if not partitions:
            return
        if member.failed:
            log.error(
                "not handing over partitions %s: the learner is stopping on an error, so their "
                "next owner continues from the last checkpoint",
                sorted(partitions),
            )
            return
        try:
            member.checkpoint(in_rebalance=True)
            for partition in sorted(partitions):
                member.checkpoints.write_handoff(partition, member.core.revoke(partition))
        except (LearnerError, OSError) as exc:
            # The next owner continues from the previous checkpoint, so this member must not
            # learn another record: its next step stops it.
            log.error("could not hand over partitions %s: %s", sorted(partitions), exc)
            member.fatal = exc
            return
        member.metrics.assigned_partitions.set(len(member.core.joins))
        log.info("handed over partitions %s", sorted(partitions))

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """Continue each new partition from its newest state, wherever it was written."""
        member = self.member
        core = member.core
        new = {tp.partition for tp in assigned} - set(core.joins)
        try:
            states = member.checkpoints.newest_partition_states(new, core.topics, member.group_id)
        except OSError as exc:  # kafka-python would log it and go on reading those partitions
            log.error("could not read the state of partitions %s: %s", sorted(new), exc)
            member.fatal = exc
            return
        for partition in sorted(new):
            state = states.get(partition)
            core.assign(partition, state)
            member.cadence.count(1)
            for topic, offset in zip(core.topics, offsets(state), strict=True):
                if offset >= 0:
                    member.consumer.seek(TopicPartition(topic, partition), offset)
        member.metrics.assigned_partitions.set(len(core.joins))
        log.info("joining partitions %s", sorted(core.joins))


def offsets(state: PartitionState | None) -> tuple[int, int]:
    """Where to continue each input; -1: not read yet, start at the committed offset."""
    if state is None:
        return -1, -1
    return state.decisions_offset, state.feedback_offset
