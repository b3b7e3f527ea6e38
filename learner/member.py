"""A running member of the learner group: consume, join, learn, produce, checkpoint,
publish and follow its slots' tuning, with its core, output writer and group consumer built
whole by `GroupMember.open` (learner.loop has the protocol that makes it exactly once)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from kafka import KafkaConsumer, TopicPartition
from kafka.coordinator.assignors.range import RangePartitionAssignor

from bandit.learning.checkpoint import CheckpointError
from bandit.learning.learner_core import Input, LearnerCore, Record, StepOutput, learned_keys
from bandit.measurement.lift import RecentTallies
from kafkaio import clients
from kafkaio.preflight import check_connection
from kafkaio.read import Recent
from kafkaio.topics import ensure_topics
from learner.cadence import Cadence
from learner.checkpointing import Checkpointing
from learner.metrics import LearnerMetrics
from learner.process import (
    LearnerError,
    LearnerResources,
    warm_start_policies,
)
from learner.publisher import ModelPublisher, Publishing
from learner.rebalance import Rebalance
from learner.tuning_switch import TuningSwitch, rewarded_treatment
from learner.writer import OutputError, OutputWriter

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 10.0
ALIGN_S = 10.0  # event time one input may lead the other by while that one has records left


@dataclass
class LearnerStatus:
    """A snapshot for progress lines and tests."""

    consumed: int
    learned: dict[str, int]
    open_decisions: int
    lag: int
    waiting: int  # decisions not read yet whose feedback is held
    checkpoints: int
    partitions: int


class GroupMember:
    """A running member: its core, output writer, group consumer and parts (cadence,
    publishing, tuning switch), built whole by `open`."""

    def __init__(
        self,
        resources: LearnerResources,
        core: LearnerCore,
        writer: OutputWriter,
        consumer: KafkaConsumer,
        seq: int,
        recent: RecentTallies,
        report: Callable[[LearnerStatus], None],
    ):
        self.resources = resources
        self.config = config = resources.config
        self.metrics: LearnerMetrics = resources.metrics
        self.checkpoints = resources.checkpoints
        self.group_id = config.learner.group_id
        self.core = core
        self.writer = writer
        self.consumer = consumer
        self.recent = recent
        self.report = report
        self.status = LearnerStatus(0, {}, 0, 0, 0, 0, 0)
        self.cadence = Cadence(config.learner, seq=seq)
        self.publishing = Publishing(
            ModelPublisher(resources.store, self._send_model), self.metrics
        )
        self.switch = TuningSwitch(
            config, resources.store, self.metrics, self._tuning_window, self.cadence,
            self.publishing,
        )  # fmt: skip
        self.checkpointing = Checkpointing(self)
        topics = config.kafka.topics
        self._topic_input = {topics.decisions: Input.DECISIONS, topics.feedback: Input.FEEDBACK}
        self._consumed = 0
        self.failed = False  # stopping on an error: see KafkaLearner.run
        self.fatal: Exception | None = None  # a rebalance that could not hand over

    @classmethod
    def open(
        cls,
        resources: LearnerResources,
        recent: RecentTallies,
        report: Callable[[LearnerStatus], None],
    ) -> GroupMember:
        """Check Kafka and the checkpoints, restore the core, then open the output writer and
        the group consumer: all of it, or (closing what was opened) an exception."""
        config, bootstrap = resources.config, resources.bootstrap_servers
        check_connection(config.kafka, bootstrap)
        log.info("learner %s: %d partitions", config.learner.member,
                 ensure_topics(config, bootstrap))  # fmt: skip
        core, seq = _restore(resources)
        core.recent = recent
        metrics = resources.metrics
        for slot, policy in core.policies.items():
            metrics.tuning_revision.labels(slot).set(core.tuned(slot).revision)
            metrics.exploration_floor.labels(slot).set(policy.exploration_floor)
        for slot, count in core.learned_here.items():
            metrics.examples_learned.labels(slot).inc(count)
        client_id = f"{config.kafka.client_id}-learner"
        try:
            writer = OutputWriter(clients.client_settings(
                config.kafka, "output_producer", bootstrap, client_id=client_id
            ))  # fmt: skip
        except OutputError as exc:
            core.close()
            raise LearnerError(str(exc)) from exc
        except BaseException:
            core.close()
            raise
        try:
            consumer = clients.consumer(
                config.kafka, "learner_consumer", bootstrap_servers=bootstrap,
                client_id=client_id, group_id=config.learner.group_id,
                auto_offset_reset=config.learner.auto_offset_reset,
                partition_assignment_strategy=[RangePartitionAssignor],  # co-partitioned
                max_poll_records=config.learner.max_poll_records,
            )  # fmt: skip
        except BaseException:
            writer.close(timeout_s=10)
            core.close()
            raise
        member = cls(resources, core, writer, consumer, seq, recent, report)
        topics = config.kafka.topics
        # The rebalance callbacks run inside `poll`, once the member is whole.
        consumer.subscribe([topics.decisions, topics.feedback], listener=Rebalance(member))
        return member

    def close(self) -> None:
        self.consumer.close(autocommit=False)  # leaves the group
        self.writer.close(timeout_s=10)
        self.core.close()

    def run_until(self, stop: threading.Event) -> None:
        self.resources.run_steps(stop, self.cadence, self, PROGRESS_INTERVAL_S)

    def progress(self) -> str:
        return _progress_line(self.status)

    # ------------------------------------------------------------------ one step
    def step(self) -> None:
        # Windows left due by a jump of event time close in steps: do not wait between them.
        batch = clients.poll(self.consumer, timeout_ms=0 if self.core.behind else 200)
        if self.fatal is not None:
            raise LearnerError(f"stopped in a rebalance: {self.fatal}") from self.fatal
        self._read_restored()
        out = StepOutput()
        by_topic: Counter[str] = Counter()
        for tp, messages in batch.items():
            by_topic[tp.topic] += len(messages)
            kind = self._topic_input[tp.topic]
            self.core.process(
                (Record(kind, tp.partition, m.offset, m.key, m.value) for m in messages), out
            )
        self._consumed += sum(by_topic.values())
        lag = self._advance_idle(out)
        self.cadence.count(sum(by_topic.values()) + sum(out.outcomes.values()))
        self._emit(out)
        self.metrics.consumed_batch(by_topic)
        # Last, so a reader who sees this status also sees the metrics of the same step.
        self.status = LearnerStatus(
            consumed=self._consumed,
            learned=dict(self.core.learned_here),
            open_decisions=self.core.open_decisions,
            lag=lag,
            waiting=sum(join.waiting for join in self.core.joins.values()),
            checkpoints=self.cadence.checkpoints_written,
            partitions=len(self.core.joins),
        )
        self.report(self.status)
        self.metrics.open_decisions.set(self.status.open_decisions)

    def _read_restored(self) -> None:
        """Read back the open joins of partitions restored in the last rebalance: here, not
        in its callback, which must return at once for the consumer to keep its session."""
        for partition, join in self.core.joins.items():
            if join.unread:
                started = time.perf_counter()
                opened = join.open_decisions  # reads the segments' indexes
                log.info("partition %d: %d open decisions read back in %.1f s", partition,
                         opened, time.perf_counter() - started)  # fmt: skip

    def _advance_idle(self, out: StepOutput) -> int:
        """Close what idle inputs allow, and keep the inputs aligned; returns the total lag."""
        decisions, feedback = self.core.topics
        now = time.time()
        total = 0
        for partition in list(self.core.joins):
            inputs = TopicPartition(decisions, partition), TopicPartition(feedback, partition)
            decisions_lag, feedback_lag = self._lag(inputs[0]), self._lag(inputs[1])
            self.core.advance_idle(partition, decisions_lag == 0, feedback_lag == 0, now, out)
            self._align(partition, inputs, decisions_lag, feedback_lag)
            total += (decisions_lag or 0) + (feedback_lag or 0)
        return total

    def _align(
        self,
        partition: int,
        inputs: tuple[TopicPartition, TopicPartition],
        decisions_lag: int | None,
        feedback_lag: int | None,
    ) -> None:
        """Pause an input whose event time runs more than ALIGN_S ahead of the other's while
        that one may have records to read; resume it once the other is within half that, or
        read to its end. Catching up a backlog, the small feedback messages drain faster than
        the decisions: unpaused, every impression would wait in memory for its decision."""
        join = self.core.joins[partition]
        lead = join.feedback_time - join.decisions_time
        paused = self.consumer.paused()
        for tp, ahead, other_lag in ((inputs[0], -lead, feedback_lag),
                                     (inputs[1], lead, decisions_lag)):  # fmt: skip
            other_has_more = other_lag != 0  # None: its end not known yet, so it may have
            if tp not in paused and ahead > ALIGN_S and other_has_more:
                self.consumer.pause(tp)
            elif tp in paused and (ahead <= ALIGN_S / 2 or not other_has_more):
                self.consumer.resume(tp)

    def _lag(self, tp: TopicPartition) -> int | None:
        """Messages after our position, or None before the first fetch tells the end."""
        highwater = self.consumer.highwater(tp)
        if highwater is None:
            return None
        lag = max(int(highwater) - int(self.consumer.position(tp)), 0)
        self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
        return lag

    def _emit(self, out: StepOutput) -> None:
        topics = self.config.kafka.topics
        decisions: Counter[tuple[str, str]] = Counter()
        rewards: dict[tuple[str, str], float] = {}
        for event in out.rewarded:
            # Same partition number as the inputs when the topic has it: no hashing per event.
            self._send(topics.rewarded, event.decision_id, event.value, event.partition)
            key = (event.slot, event.group)
            decisions[key] += 1
            rewards[key] = rewards.get(key, 0.0) + event.reward
        for (slot, group), count in decisions.items():  # once per step, not per event
            self.metrics.rewarded.labels(slot, group).inc(count)
            self.metrics.reward.labels(slot, group).inc(rewards[slot, group])
        for dead in out.dead_letters:
            self._send(topics.deadletter, dead.key, msgspec.json.encode(dead))
            self.metrics.dead_letters.labels(dead.code).inc()
        self.writer.ship()
        self.resources.weighed(out.weights)
        for outcome, count in out.outcomes.items():
            self.metrics.joins.labels(outcome).inc(count)
        for slot, count in out.learned.items():
            self.metrics.examples_learned.labels(slot).inc(count)

    def _send(
        self, topic: str, key: str | None, value: bytes, partition: int | None = None
    ) -> None:
        self.writer.send(topic, key.encode() if key else None, value, partition)

    def _send_model(self, slot: str, version_file: bytes) -> None:
        self._send(self.config.kafka.topics.models, slot, version_file)
        self.writer.ship()

    def checkpoint(self, in_rebalance: bool = False, final: bool = False) -> None:
        """Make every output durable, write the checkpoint, then commit and publish
        (`Checkpointing`); in a rebalance callback neither of the last two."""
        self.checkpointing.write(in_rebalance, final)
        if not in_rebalance and self.cadence.publish_due():
            self.publishing.publish(self.core)

    # ------------------------------------------------------------------ self-tuning
    def follow_tuning(self) -> None:
        """Switch the slots whose tuning history asks for other settings (TuningSwitch)."""
        # no partitions: the group has not assigned this member any, so nothing to switch
        self.switch.follow(self.core, self._caught_up, possible=bool(self.core.joins))

    def _caught_up(self) -> bool:
        """Every input of every assigned partition read to its end. Then each rewarded event
        on the topic comes from a record already read here: a switch's warm start cannot
        take an event that a record still to be read (after a restart, say) would emit and
        learn again."""
        for partition in self.core.joins:
            for topic in self.core.topics:
                if self._lag(TopicPartition(topic, partition)) != 0:
                    return False
        return True

    def _tuning_window(self, slot: str) -> list[Recent]:
        """The slot's treatment events on the rewarded topic (this member's partitions), each
        once. A decision still open here was emitted by an earlier run (which closed it
        before a crash); it is learned when it closes here, so not in the warm start too."""
        owned = set(self.core.joins)
        found = rewarded_treatment(
            self.config, self.resources.bootstrap_servers, slot, partitions=owned
        )
        return [r for r in found if not self.core.is_open(r.decision_id)]


def _restore(resources: LearnerResources) -> tuple[LearnerCore, int]:
    """The core from the newest checkpoint (else warm-started from the published
    versions), and the sequence number of the next checkpoint."""
    config, checkpoints = resources.config, resources.checkpoints
    settings, topics = config.learner, config.kafka.topics
    inputs = (topics.decisions, topics.feedback)
    others = checkpoints.members_owning_other_slots(settings.slots, inputs, settings.group_id)
    if others:
        member, owned = next(iter(others.items()))
        raise CheckpointError(
            f"member {member!r} of group {settings.group_id!r} learns slots "
            f"{owned or 'all'}, this one {settings.slots or 'all'}: the members of a group "
            "share its partitions, so they must own the same slots; give each set of "
            "slots its own learner.group_id"
        )
    policies, tuning = warm_start_policies(resources.store, learned_keys(config))
    checkpoint = checkpoints.latest()
    if checkpoint is None:
        core = LearnerCore(
            config, clock=time.time, segments=checkpoints.segments, policies=policies,
            tuning=tuning,
        )  # fmt: skip
        return core, checkpoints.next_seq()
    if checkpoint.topics != inputs:
        raise CheckpointError(
            f"the checkpoints in {checkpoints.directory} are for topics {checkpoint.topics}, "
            f"not {topics.decisions} and {topics.feedback}; point learner.checkpoint_dir "
            "elsewhere"
        )
    log.info("restored checkpoint %d", checkpoint.seq)
    core = LearnerCore.from_checkpoint(
        config, checkpoint, policies, tuning, clock=time.time, segments=checkpoints.segments
    )
    return core, checkpoint.seq + 1


def _progress_line(status: LearnerStatus) -> str:
    learned = ", ".join(f"{slot} {count:,}" for slot, count in sorted(status.learned.items()))
    return (
        f"learner: {status.consumed:,} read, lag {status.lag:,}, "
        f"{status.open_decisions:,} open, learned {learned}, "
        f"{status.checkpoints} checkpoints, {status.partitions} partitions"
    )
