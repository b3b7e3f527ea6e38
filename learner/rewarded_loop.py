"""`artbandit learn --from-rewarded`: one learner of the owned slots over every partition of
the rewarded topic, behind join-only members (`learner.learns = false`).

Exactly once, as the group learner: the model announcements written so far are acknowledged
before a checkpoint records the models and, per partition, the next offset and the last
event learned (`bandit.learning.rewarded_learning`); a restart continues from it. It reads the topic
with no consumer group (it assigns itself every partition): run one per set of slots, with
its own `learner.member` (its checkpoint directory).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Unpack

from kafka import KafkaConsumer, TopicPartition

from bandit.config import Config, policy_slots
from bandit.learning.checkpoint import CheckpointError
from bandit.learning.rewarded_learning import RewardedLearnerCore
from kafkaio import clients
from kafkaio.read import Recent
from kafkaio.topics import ensure_topics
from learner.cadence import Cadence
from learner.process import (
    FINAL_FLUSH_S,
    FLUSH_S,
    LearnerOptions,
    LearnerResources,
    ResourceViews,
    warm_start_policies,
)
from learner.publisher import ModelPublisher, Publishing
from learner.tuning_switch import TuningSwitch, rewarded_treatment
from learner.writer import OutputError, OutputWriter

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 5.0


class RewardedLearnerError(RuntimeError):
    """The rewarded learner cannot go on; a restart continues from its last checkpoint."""


class RewardedLearner(ResourceViews):
    """Learns the owned slots from the rewarded topic. `run(stop)` until `stop` is set, then
    checkpoint, publish and return."""

    def __init__(self, config: Config, bootstrap_servers: str, **options: Unpack[LearnerOptions]):
        self.resources = LearnerResources(config, bootstrap_servers, **options)
        self.config = config
        self.topic = config.kafka.topics.rewarded
        self.outcomes: Counter[str] = Counter()  # learned, duplicate, not_owned, ...
        self.consumed = 0
        self._running: _Reader | None = None  # for inspection only: `core`

    @property
    def core(self) -> RewardedLearnerCore:
        """The running learner's core, to inspect from another thread (tests, tools)."""
        if self._running is None:
            raise RewardedLearnerError("the learner is not running")
        return self._running.core

    def run(self, stop: threading.Event) -> None:
        """Learn until `stop` is set, then checkpoint and publish."""
        with self.resources.running():
            core, seq = self._restore()
            try:
                writer = OutputWriter(clients.client_settings(
                    self.config.kafka, "output_producer", self.resources.bootstrap_servers,
                    client_id=f"{self.config.kafka.client_id}-rewarded-learner",
                ))  # fmt: skip
                try:
                    reader = _Reader(self, core, writer, seq)
                    self._running = reader
                    try:
                        self.ready.set()
                        reader.run_until(stop)
                    finally:
                        self._running = None
                        reader.consumer.close(autocommit=False)
                finally:
                    writer.close(timeout_s=10)
            except OutputError as exc:
                raise RewardedLearnerError(f"{exc}; restart from the last checkpoint") from exc
            finally:
                core.close()

    def _restore(self) -> tuple[RewardedLearnerCore, int]:
        """The core from the newest checkpoint (else warm-started from the published
        versions), and the sequence number of the next checkpoint."""
        checkpoints = self.resources.checkpoints
        checkpoint = checkpoints.latest()
        if checkpoint is None:
            keys = policy_slots(self.config, self.config.learned_slots)
            policies, tuning = warm_start_policies(self.resources.store, keys)
            core = RewardedLearnerCore(
                self.config, self.topic, clock=time.time, policies=policies, tuning=tuning
            )
            return core, checkpoints.next_seq()
        if checkpoint.topics != (self.topic, ""):
            raise CheckpointError(
                f"the checkpoints in {checkpoints.directory} are not a rewarded learner's "
                f"of {self.topic} (topics {checkpoint.topics}); give it its own learner.member"
            )
        log.info("restored checkpoint %d", checkpoint.seq)
        core = RewardedLearnerCore.from_checkpoint(
            self.config, self.topic, checkpoint, clock=time.time
        )
        return core, checkpoint.seq + 1


class _Reader:
    """The running rewarded learner: its core, writer, consumer of every partition and its
    parts (cadence, publishing, tuning switch), built whole."""

    def __init__(
        self, learner: RewardedLearner, core: RewardedLearnerCore, writer: OutputWriter, seq: int
    ):
        self.learner = learner
        self.resources = resources = learner.resources
        self.config = learner.config
        self.metrics = resources.metrics
        self.topic = learner.topic
        self.core = core
        self.writer = writer
        self.cadence = Cadence(self.config.learner, seq=seq)
        self.publishing = Publishing(
            ModelPublisher(resources.store, self._send_model), self.metrics
        )
        self.switch = TuningSwitch(
            self.config, resources.store, self.metrics, self._tuning_window, self.cadence,
            self.publishing,
        )  # fmt: skip
        self._counted: dict[str, int] = {}  # examples_learned as the metric has it
        self.consumer = self._consumer()

    def run_until(self, stop: threading.Event) -> None:
        self.resources.run_steps(stop, self.cadence, self, PROGRESS_INTERVAL_S)

    def progress(self) -> str:
        return f"rewarded learner: read {self.learner.consumed:,}, {dict(self.learner.outcomes)}"

    def _consumer(self) -> KafkaConsumer:
        """Every partition of the rewarded topic, each from its checkpointed offset."""
        bootstrap = self.resources.bootstrap_servers
        partitions = ensure_topics(self.config, bootstrap)
        consumer = clients.consumer(
            self.config.kafka, "reader", bootstrap_servers=bootstrap,
            client_id=f"{self.config.kafka.client_id}-rewarded-learner",
            enable_auto_commit=False, max_poll_records=self.config.learner.max_poll_records,
        )  # fmt: skip
        found = consumer.partitions_for_topic(self.topic) or set()
        if len(found) != partitions:
            consumer.close()
            raise RewardedLearnerError(
                f"{self.topic} has {len(found)} partitions and the inputs {partitions}: each "
                "input partition's rewarded events must stay in one partition, in order"
            )
        assigned = [TopicPartition(self.topic, p) for p in sorted(found)]
        consumer.assign(assigned)
        for tp in assigned:
            position = self.core.positions.get(tp.partition)
            if position is not None and position.offset >= 0:
                consumer.seek(tp, position.offset)
            else:
                consumer.seek_to_beginning(tp)
        return consumer

    def step(self) -> None:
        batch = self.consumer.poll(timeout_ms=200)
        outcomes: Counter[str] = Counter()
        weights: dict[str, list[float]] = {}
        read = 0
        for tp, messages in batch.items():
            read += len(messages)
            records = ((tp.partition, m.offset, m.value) for m in messages)
            self.core.process(records, outcomes, weights)
        self.resources.weighed(weights)
        self.learner.consumed += read
        self.cadence.count(read)
        self.learner.outcomes.update(outcomes)
        self.metrics.consumed.labels(self.topic).inc(read)
        for slot, count in self.core.learned_here.items():
            if count != self._counted.get(slot):
                self.metrics.examples_learned.labels(slot).inc(count - self._counted.get(slot, 0))
                self._counted[slot] = count
        for outcome in ("duplicate", "not_owned", "malformed", "unlearnable"):
            if outcomes[outcome]:
                self.metrics.joins.labels(outcome).inc(outcomes[outcome])

    def checkpoint(self, in_rebalance: bool = False, final: bool = False) -> None:
        """Make the announcements sent so far durable, write the checkpoint, then publish
        when due. Never the other way round: a version published before its checkpoint,
        by a learner killed in between, would be the warm start of a successor with no
        checkpoint, which would learn its events a second time."""
        self.writer.flush(timeout_s=FINAL_FLUSH_S if final else FLUSH_S)
        member = self.config.learner.member
        self.resources.checkpoints.write(self.core.checkpoint(self.cadence.seq, member))
        self.cadence.checkpointed()
        self.resources.show_weights()
        if self.cadence.publish_due() or final:
            self.publishing.publish(self.core)
            if final:
                self.writer.flush(timeout_s=FINAL_FLUSH_S)  # the announcements, on the way out

    def follow_tuning(self) -> None:
        self.switch.follow(self.core, lambda: True)

    def _tuning_window(self, slot: str) -> list[Recent]:
        """What this learner has read: below its positions (a checkpoint has just made each
        of those events its own)."""
        before = {p: position.offset for p, position in self.core.positions.items()}
        return rewarded_treatment(
            self.config, self.resources.bootstrap_servers, slot, before=before
        )

    def _send_model(self, slot: str, version_file: bytes) -> None:
        self.writer.send(self.config.kafka.topics.models, slot.encode(), version_file, None)
        self.writer.ship()
