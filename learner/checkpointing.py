"""Writing a group member's checkpoint, in the order exactly-once needs (learner.loop):
every output acknowledged by Kafka first, then the checkpoint (models, offsets, open joins)
in one atomic file, then the offsets committed to Kafka (for lag and tools only) and each
partition's lift sums written for the lift endpoint."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from bandit.learning.checkpoint import Checkpoint, PartitionState
from bandit.learning.learner_core import LearnerCore
from bandit.measurement.lift import RecentTallies
from bandit.measurement.tallies import PartitionTally
from learner.cadence import Cadence
from learner.process import FINAL_FLUSH_S, FLUSH_S, LearnerError, LearnerResources
from learner.rebalance import offsets
from learner.writer import OutputError, OutputWriter

log = logging.getLogger(__name__)


class Running(Protocol):
    """The running member whose checkpoints these are."""

    resources: LearnerResources
    core: LearnerCore
    writer: OutputWriter
    consumer: KafkaConsumer
    cadence: Cadence
    recent: RecentTallies


class Checkpointing:
    def __init__(self, member: Running):
        self.resources = member.resources
        self.config = member.resources.config
        self.metrics = member.resources.metrics
        self.checkpoints = member.resources.checkpoints
        self.core = member.core
        self.writer = member.writer
        self.consumer = member.consumer
        self.cadence = member.cadence
        self.recent = member.recent
        self._tally_progress: dict[tuple[str, int], tuple[int, int]] = {}  # last sums written

    def write(self, in_rebalance: bool = False, final: bool = False) -> None:
        """Make every output durable, then write the checkpoint, then commit.

        In a rebalance callback (kafka-python's IO thread, which must not block on the
        consumer) it does not commit; the next regular checkpoint does.
        """
        started = time.perf_counter()
        segment_bytes = self.checkpoints.segments.written_bytes
        seq = self.cadence.seq
        # On the way out, a broker that is gone (a demo killed with its broker) must not hold
        # the exit for a minute: the previous checkpoint stays, and a restart continues there.
        try:
            self.writer.flush(timeout_s=FINAL_FLUSH_S if final else FLUSH_S)
        except OutputError as exc:
            raise LearnerError(f"{exc}; restart from the last checkpoint") from exc
        try:  # VW saves through a temp file, so a full disk can fail either step
            checkpoint = self.core.checkpoint(seq, self.config.learner.member)
            self.checkpoints.write(checkpoint)
        except Exception as exc:  # stop before anything depends on it
            raise LearnerError(
                f"checkpoint {seq} could not be written in {self.checkpoints.directory} "
                f"({type(exc).__name__}: {exc}); the previous one is intact and a restart "
                "continues from it"
            ) from exc
        self.cadence.checkpointed()
        written = self.checkpoints.written_bytes + self.checkpoints.segments.written_bytes
        self.metrics.checkpointed(
            time.perf_counter() - started, checkpoint.created_at, written - segment_bytes
        )
        if in_rebalance:
            return
        self._commit(checkpoint.partitions)
        self._write_tallies(checkpoint)
        for slot in self.config.learned_slots:
            self.metrics.watched(slot, self.recent.lift(slot))
        self.resources.show_weights()

    def _commit(self, partitions: dict[int, PartitionState]) -> None:
        commits = {}
        for partition, state in partitions.items():
            for topic, offset in zip(self.core.topics, offsets(state), strict=True):
                if offset >= 0:  # an input not read yet keeps the group's committed offset
                    commits[TopicPartition(topic, partition)] = OffsetAndMetadata(offset, "", -1)
        try:
            if commits:
                self.consumer.commit(commits)
        except KafkaError as exc:  # informational only: the checkpoint is the truth
            log.warning("offset commit failed (the checkpoint is written): %s", exc)

    def _write_tallies(self, checkpoint: Checkpoint) -> None:
        """Publish each partition's lift sums, as checkpointed, for the lift endpoint."""
        topic = self.core.topics[0]
        for partition, state in checkpoint.partitions.items():
            for slot, periods in state.lift.items():
                tally = PartitionTally(
                    slot, partition, topic, state.progress, checkpoint.created_at, periods
                )
                if self._tally_progress.get((slot, partition)) == tally.order:
                    continue
                try:
                    self.resources.store.write_tally(tally)
                except OSError as exc:  # the lift endpoint lags; the next checkpoint retries
                    log.error("writing the lift sums of %s/%d failed: %s", slot, partition, exc)
                    continue
                self._tally_progress[slot, partition] = tally.order
