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
import sys
import threading
import time
from collections import Counter

from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from bandit.config import Config, policy_slots
from bandit.contracts.events import RewardedEvent
from bandit.learning.checkpoint import CheckpointError
from bandit.learning.rewarded_learning import RewardedLearnerCore
from kafkaio import clients
from kafkaio.topics import ensure_topics
from learner.loop import FINAL_FLUSH_S, FLUSH_S, LearnerProcess, warm_start_policies
from learner.metrics import MetricsServer
from learner.publisher import ModelPublisher
from learner.writer import OutputError, OutputWriter

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 5.0


class RewardedLearnerError(RuntimeError):
    """The rewarded learner cannot go on; a restart continues from its last checkpoint."""


class RewardedLearner(LearnerProcess):
    """Learns the owned slots from the rewarded topic. `run(stop)` until `stop` is set, then
    checkpoint, publish and return."""

    def __init__(
        self,
        config: Config,
        bootstrap_servers: str,
        registry: CollectorRegistry | None = None,
        serve_metrics: bool = True,
        progress: bool = False,
    ):
        super().__init__(config, bootstrap_servers, registry, serve_metrics, progress)
        self.topic = config.kafka.topics.rewarded
        self.outcomes: Counter[str] = Counter()  # learned, duplicate, not_owned, ...
        self.consumed = 0
        self._counted: dict[str, int] = {}  # examples_learned as the metric has it

    def run(self, stop: threading.Event) -> None:
        """Learn until `stop` is set, then checkpoint and publish."""
        self.checkpoints.lock()
        try:
            self.core = self._restore()
            try:
                self.writer = OutputWriter(clients.client_settings(
                    self.config.kafka, "output_producer", self.bootstrap_servers,
                    client_id=f"{self.config.kafka.client_id}-rewarded-learner",
                ))  # fmt: skip
                try:
                    self._learn_until(stop)
                finally:
                    self.writer.close(timeout_s=10)
            finally:
                self.core.close()
        except OutputError as exc:
            raise RewardedLearnerError(f"{exc}; restart from the last checkpoint") from exc
        finally:
            self.checkpoints.unlock()

    def _learn_until(self, stop: threading.Event) -> None:
        consumer = self._consumer()
        self.publisher = ModelPublisher(self.store, self._send_model)
        server = None
        if self.serve_metrics:
            server = MetricsServer(
                self.metrics.registry, self.config.learner.metrics_host,
                self.config.learner.metrics_port,
            )  # fmt: skip
            self.metrics_port = server.port
        try:
            self.ready.set()
            last_progress = time.monotonic()
            while not stop.is_set():
                self._step(consumer)
                if self._checkpoint_due():
                    self._checkpoint()
                if self._since_checkpoint == 0 and self._tuning_due():
                    self._follow_tuning()  # right after a checkpoint: it has everything
                if self.progress and time.monotonic() - last_progress > PROGRESS_INTERVAL_S:
                    last_progress = time.monotonic()
                    print(f"rewarded learner: read {self.consumed:,}, "
                          f"{dict(self.outcomes)}", file=sys.stderr, flush=True)  # fmt: skip
            self._checkpoint(final=True)
        finally:
            consumer.close(autocommit=False)
            if server is not None:
                server.stop()

    def _restore(self) -> RewardedLearnerCore:
        checkpoint = self.checkpoints.latest()
        if checkpoint is None:
            self._seq = self.checkpoints.next_seq()
            keys = policy_slots(self.config, self.config.learned_slots)
            policies, tuning = warm_start_policies(self.store, keys)
            return RewardedLearnerCore(
                self.config, self.topic, policies, None, tuning, clock=time.time
            )
        if checkpoint.topics != (self.topic, ""):
            raise CheckpointError(
                f"the checkpoints in {self.checkpoints.directory} are not a rewarded learner's "
                f"of {self.topic} (topics {checkpoint.topics}); give it its own learner.member"
            )
        self._seq = checkpoint.seq + 1
        log.info("restored checkpoint %d", checkpoint.seq)
        return RewardedLearnerCore.from_checkpoint(
            self.config, self.topic, checkpoint, clock=time.time
        )

    def _consumer(self) -> KafkaConsumer:
        """Every partition of the rewarded topic, each from its checkpointed offset."""
        partitions = ensure_topics(self.config, self.bootstrap_servers)
        consumer = clients.consumer(
            self.config.kafka, "reader", bootstrap_servers=self.bootstrap_servers,
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

    def _step(self, consumer: KafkaConsumer) -> None:
        batch = consumer.poll(timeout_ms=200)
        outcomes: Counter[str] = Counter()
        weights: dict[str, list[float]] = {}
        read = 0
        for tp, messages in batch.items():
            read += len(messages)
            records = ((tp.partition, m.offset, m.value) for m in messages)
            self.core.process(records, outcomes, weights)
        self._weighed(weights)
        self.consumed += read
        self._since_checkpoint += read
        self.outcomes.update(outcomes)
        self.metrics.consumed.labels(self.topic).inc(read)
        for slot, count in self.core.learned_here.items():
            if count != self._counted.get(slot):
                self.metrics.examples_learned.labels(slot).inc(count - self._counted.get(slot, 0))
                self._counted[slot] = count
        for outcome in ("duplicate", "not_owned", "malformed", "unlearnable"):
            if outcomes[outcome]:
                self.metrics.joins.labels(outcome).inc(outcomes[outcome])

    def _checkpoint(self, final: bool = False) -> None:
        """Make the announcements sent so far durable, write the checkpoint, then publish
        when due. Never the other way round: a version published before its checkpoint,
        by a learner killed in between, would be the warm start of a successor with no
        checkpoint, which would learn its events a second time."""
        self.writer.flush(timeout_s=FINAL_FLUSH_S if final else FLUSH_S)
        self.checkpoints.write(self.core.checkpoint(self._seq, self.config.learner.member))
        self._seq += 1
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        for slot in self.config.learned_slots:
            self.metrics.weighed(slot, self._weights.get(slot, ()))
        if final or time.monotonic() - self._last_publish >= self.config.learner.publish_interval_s:
            self._last_publish = time.monotonic()
            self._publish()
            if final:
                self.writer.flush(timeout_s=FINAL_FLUSH_S)  # the announcements, on the way out

    def _tuning_window(self, slot: str) -> list[RewardedEvent]:
        """What this learner has read: below its positions (a checkpoint has just made each
        of those events its own)."""
        before = {p: position.offset for p, position in self.core.positions.items()}
        return self._rewarded_treatment(slot, before=before)

    def _send_model(self, slot: str, version_file: bytes) -> None:
        self.writer.send(self.config.kafka.topics.models, slot.encode(), version_file, None)
        self.writer.ship()
