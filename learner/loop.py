"""The Kafka shell around the learner's core: consume, join, learn, produce, checkpoint, publish.

Exactly once, by this protocol: every output of the records read so far (rewarded events,
dead letters) is acknowledged by Kafka *before* a checkpoint records how far they were read;
the checkpoint holds the models, those offsets and the open joins in one atomic file; on
start (and on every assignment) a partition continues from its newest checkpointed state.
A crash therefore replays exactly the records after the last checkpoint into the models as
they were then: each rewarded event is learned once, and the rewarded topic may repeat an
event (at least once, never missing one). Offsets are committed to Kafka after each
checkpoint, for lag monitoring and tools; the checkpoint, not Kafka, is what the learner
trusts.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgspec
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry

from bandit.config import Config
from bandit.contracts import events
from bandit.contracts.events import RewardedEvent
from bandit.contracts.slots import SlotConfig
from bandit.learning.checkpoint import Checkpoint, CheckpointError, PartitionState
from bandit.learning.learner_core import Input, LearnerCore, Record, StepOutput, learned_keys
from bandit.learning.tuning import Tuned, TunedPolicies, recent_window, tuned_slot, warm_start
from bandit.measurement.lift import PartitionTally, RecentTallies
from bandit.policies import Policy
from kafkaio import clients
from kafkaio.read import TopicMissing, read_topic
from kafkaio.topics import ensure_topics
from learner.checkpoint_store import CheckpointStore
from learner.metrics import LearnerMetrics, MetricsServer
from learner.publisher import ModelPublisher
from learner.writer import OutputError, OutputWriter
from storage.model_store import ModelStore, ModelStoreError

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 10.0
TUNING_RETRY_S = 30.0  # after a switch failed on Kafka, so retries never starve the poll
RECENT_WEIGHTS = 10_000  # sampled importance weights per slot behind the replay gauges


class LearnerError(RuntimeError):
    """The learner cannot go on safely (e.g. Kafka refused an output); restart it."""


FLUSH_S = 60.0  # how long a checkpoint waits for Kafka to acknowledge the outputs
FINAL_FLUSH_S = 10.0  # the same, for the checkpoint on the way out


@dataclass
class LearnerStatus:
    """A snapshot for progress lines and tests."""

    consumed: int
    learned: dict[str, int]
    open_decisions: int
    lag: int
    checkpoints: int
    partitions: int


@dataclass
class _Parts:
    """What a running learner opens, built whole by `KafkaLearner._open`."""

    core: LearnerCore
    writer: OutputWriter
    publisher: ModelPublisher
    consumer: KafkaConsumer

    def close(self) -> None:
        self.consumer.close(autocommit=False)  # leaves the group
        self.writer.close(timeout_s=10)
        self.core.close()


class LearnerProcess:
    """What every learner process keeps (its settings, metrics, model store, checkpoint
    directory, when it last checkpointed and published) and how it follows its slots'
    tuning history. `ready` is set once it runs; `core` and `publisher` are what it runs."""

    core: TunedPolicies
    publisher: ModelPublisher

    def __init__(
        self,
        config: Config,
        bootstrap_servers: str,
        registry: CollectorRegistry | None = None,
        serve_metrics: bool = True,
        progress: bool = False,
    ):
        self.config = config
        self.bootstrap_servers = bootstrap_servers
        self.metrics = LearnerMetrics(registry or CollectorRegistry())
        self.serve_metrics = serve_metrics
        self.progress = progress
        self.metrics_port: int | None = None
        self.store = ModelStore(config.model_store.path, config.model_store.keep_versions)
        settings = config.learner
        self.checkpoints = CheckpointStore(
            settings.checkpoint_dir, settings.member, settings.keep_checkpoints
        )
        self.ready = threading.Event()
        self._seq = 1  # of the next checkpoint
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._last_publish = float("-inf")
        self._changes_counted: dict[str, int] = {}  # changes_detected as the metric has it
        self._weights: dict[str, deque[float]] = {}  # slot -> recent sampled weights
        self._tuning_refused: set[tuple[str, Tuned]] = set()
        self._next_tuning_check = float("-inf")

    def _checkpoint_due(self) -> bool:
        settings = self.config.learner
        if self._since_checkpoint == 0:
            return False  # nothing read or closed since the last one
        return self._since_checkpoint >= settings.checkpoint_every_events or (
            time.monotonic() - self._last_checkpoint >= settings.checkpoint_interval_s
        )

    def _weighed(self, weights: Mapping[str, list[float]]) -> None:
        """Keep the newest RECENT_WEIGHTS sampled importance weights per slot."""
        for slot, sampled in weights.items():
            self._weights.setdefault(slot, deque(maxlen=RECENT_WEIGHTS)).extend(sampled)

    def _tuning_due(self) -> bool:
        return time.monotonic() >= self._next_tuning_check

    def _follow_tuning(self) -> None:
        """Switch each slot whose tuning history (the tuner's or an operator's) asks for
        other settings than its policy learns under.

        Right after a checkpoint every output is acknowledged, so the rewarded topic holds
        every event the policy has learned: the new policy learns the slot's most recent
        `tuning.window_events` of them once each (`_tuning_window`) and takes over before the
        next record. The next checkpoint, forced at once, makes it durable; a crash before it
        restarts from the old policy, which switches again the same way.
        """
        self._next_tuning_check = time.monotonic() + self.config.learner.checkpoint_interval_s
        if not self._tuning_possible():
            return
        core = self.core
        for slot, policy in list(core.policies.items()):
            if policy.slot.policy != "vw" or slot not in self.config.slots:  # shadows: fixed
                continue
            try:
                state = self.store.tuning(slot)
            except (OSError, ModelStoreError) as exc:
                log.error("slot %s: cannot read its tuning history: %s", slot, exc)
                continue
            self.metrics.tuning_wanted_revision.labels(slot).set(state.revision)
            running = core.tuned(slot)
            wanted = Tuned(state.revision, tuple(state.overrides))
            if wanted.revision == running.revision or (slot, wanted) in self._tuning_refused:
                continue
            if wanted.overrides == running.overrides:  # e.g. a pin of what runs: relabel
                core.tuning[slot] = wanted
            elif not self._caught_up():
                log.info("slot %s: switching to tuning revision %d once the inputs are read "
                         "to their end", slot, wanted.revision)  # fmt: skip
                continue
            else:
                try:
                    self._switch(slot, wanted)
                except ValueError as exc:  # settings the config refuses: not retried
                    self._tuning_refused.add((slot, wanted))
                    self.metrics.tuning_failures.labels(slot).inc()
                    log.error("slot %s: tuning revision %d refused: %s", slot, wanted.revision, exc)
                    continue
                except (KafkaError, TopicMissing, OSError) as exc:
                    self.metrics.tuning_failures.labels(slot).inc()
                    log.error("slot %s: switch to tuning revision %d failed, will retry in "
                              "%.0f s: %s", slot, wanted.revision, TUNING_RETRY_S, exc)  # fmt: skip
                    self._next_tuning_check = time.monotonic() + TUNING_RETRY_S
                    continue
            self.metrics.tuning_revision.labels(slot).set(wanted.revision)
            self._since_checkpoint += 1
            self._last_checkpoint = float("-inf")  # checkpoint the switch at once
            self._last_publish = float("-inf")  # and publish it
            self.publisher.forget(slot)

    def _switch(self, slot: str, wanted: Tuned) -> None:
        started = time.perf_counter()
        slot_config = tuned_slot(slot, self.config.slots[slot], wanted.overrides)
        window = recent_window(slot, self._tuning_window(slot), self.config.tuning.window_events)
        policy = warm_start(slot_config, window)
        self.core.switch(slot, wanted, policy)
        self.metrics.tuning_switches.labels(slot).inc()
        log.info(
            "slot %s: switched to tuning revision %d (%s), warm-started on %d events in %.1f s",
            slot, wanted.revision, " ".join(wanted.overrides) or "configured settings",
            policy.examples_learned, time.perf_counter() - started,
        )  # fmt: skip

    def _rewarded_treatment(
        self,
        slot: str,
        partitions: set[int] | None = None,
        before: Mapping[int, int] | None = None,
    ) -> list[RewardedEvent]:
        """The slot's treatment events on the rewarded topic (see `read_topic`), each
        decision once."""
        found: dict[str, RewardedEvent] = {}
        kafka, topic = self.config.kafka, self.config.kafka.topics.rewarded
        for value in read_topic(kafka, self.bootstrap_servers, topic, partitions, before=before):
            try:
                event = events.decode(value, RewardedEvent)
            except events.EventError:
                continue  # not a learner's output; the replay reports such lines
            if event.slot == slot and event.group == "treatment":
                found.setdefault(event.decision_id, event)
        return list(found.values())

    def _publish(self) -> None:
        """A new version of each policy that learned since its last one."""
        try:
            published = self.publisher.publish(self.core.policies, self.core.tuning)
        except (OSError, ModelStoreError) as exc:
            log.error("publishing a policy version failed, will retry: %s", exc)
            return
        for info in published:
            self.metrics.published_version.labels(info.slot).set(int(info.version[1:]))
        for slot, policy in self.core.policies.items():
            changes = policy.changes_detected - self._changes_counted.get(slot, 0)
            if changes > 0:
                log.warning("slot %s: its treatment reward fell (%d change(s) detected); "
                            "exploring more for a while", slot, changes)  # fmt: skip
                self.metrics.world_changes.labels(slot).inc(changes)
            self._changes_counted[slot] = policy.changes_detected
            self.metrics.exploration_floor.labels(slot).set(policy.exploration_floor)

    # What a learner gives the tuning switch
    def _tuning_possible(self) -> bool:
        """Whether it can switch at all now (e.g. it has partitions)."""
        return True

    def _caught_up(self) -> bool:
        """Whether a switch's warm start may read the rewarded topic now."""
        return True

    def _tuning_window(self, slot: str) -> list[RewardedEvent]:
        """The slot's treatment events it has learned, each decision once."""
        raise NotImplementedError


class KafkaLearner(LearnerProcess):
    """One member of the learner group. `run(stop)` until `stop` is set, then checkpoint,
    leave the group and return."""

    def __init__(
        self,
        config: Config,
        bootstrap_servers: str,
        registry: CollectorRegistry | None = None,
        serve_metrics: bool = True,
        progress: bool = False,
    ):
        super().__init__(config, bootstrap_servers, registry, serve_metrics, progress)
        self.metrics.start_at_zero(list(config.slots))
        settings = config.learner
        topics = config.kafka.topics
        self._topic_input = {topics.decisions: Input.DECISIONS, topics.feedback: Input.FEEDBACK}
        self._parts: _Parts | None = None  # what `run` opens, built whole by `_open`
        self._checkpoints_written = 0
        self._tally_progress: dict[tuple[str, int], tuple[int, int]] = {}  # last sums written
        self._recent = RecentTallies(settings.recent_window_s)  # calibration, guardrails
        self._consumed = 0
        self._status = LearnerStatus(0, {}, 0, 0, 0, 0)
        self._fatal: Exception | None = None  # a rebalance that could not hand over
        # Set when `run` is leaving on an exception: the batch it was in may be half done
        # (windows closed, examples learned, outputs not yet acknowledged), so nothing may
        # checkpoint or hand that state over; a restart continues from the last checkpoint.
        self._failed = False

    # ------------------------------------------------------------------ lifecycle
    def run(self, stop: threading.Event) -> None:
        server = None
        self.checkpoints.lock()
        try:
            self._start()
            if self.serve_metrics:
                server = MetricsServer(
                    self.metrics.registry, self.config.learner.metrics_host,
                    self.config.learner.metrics_port,
                )  # fmt: skip
                self.metrics_port = server.port
            self.ready.set()
            last_progress = time.monotonic()
            while not stop.is_set():
                self._step()
                if self._checkpoint_due():
                    self.checkpoint()
                if self._since_checkpoint == 0 and self._tuning_due():
                    self._follow_tuning()  # right after a checkpoint: it has everything
                if self.progress and time.monotonic() - last_progress > PROGRESS_INTERVAL_S:
                    last_progress = time.monotonic()
                    print(_progress_line(self.status()), file=sys.stderr, flush=True)
            self.checkpoint(final=True)
        except BaseException:
            self._failed = True  # before `_close`, whose leaving the group revokes partitions
            raise
        finally:
            self._close()
            if server is not None:
                server.stop()
            self.checkpoints.unlock()

    @property
    def core(self) -> LearnerCore:
        return self._opened().core

    @property
    def consumer(self) -> KafkaConsumer:
        return self._opened().consumer

    @property
    def writer(self) -> OutputWriter:
        return self._opened().writer

    @property
    def publisher(self) -> ModelPublisher:
        return self._opened().publisher

    def _opened(self) -> _Parts:
        if self._parts is None:
            raise LearnerError("the learner has not started")
        return self._parts

    def _start(self) -> None:
        self._parts = self._open()

    def _open(self) -> _Parts:
        """Check Kafka and the checkpoints, restore the core, then open the output writer and
        the group consumer: all of it, or (closing what was opened) an exception."""
        clients.check_tls(self.config.kafka, self.bootstrap_servers)
        partitions = ensure_topics(self.config, self.bootstrap_servers)
        log.info("learner %s: %d partitions", self.config.learner.member, partitions)
        checkpoint = self.checkpoints.latest()
        topics = self.config.kafka.topics
        self._check_owned_slots()
        if checkpoint is not None:
            if checkpoint.topics != (topics.decisions, topics.feedback):
                raise CheckpointError(
                    f"the checkpoints in {self.checkpoints.directory} are for topics "
                    f"{checkpoint.topics}, not {topics.decisions} and {topics.feedback}; "
                    "point learner.checkpoint_dir elsewhere"
                )
            self._seq = checkpoint.seq + 1
            core = LearnerCore.from_checkpoint(
                self.config, checkpoint, *self._warm_start(), clock=time.time
            )
            log.info("restored checkpoint %d", checkpoint.seq)
        else:
            self._seq = self.checkpoints.next_seq()
            policies, tuning = self._warm_start()
            core = LearnerCore(self.config, policies, None, tuning, clock=time.time)
        core.recent = self._recent
        for slot in core.policies:
            self.metrics.tuning_revision.labels(slot).set(core.tuned(slot).revision)
            self.metrics.exploration_floor.labels(slot).set(core.policies[slot].exploration_floor)
        for slot, count in core.learned_here.items():
            self.metrics.examples_learned.labels(slot).inc(count)
        try:
            writer = OutputWriter(
                clients.client_settings(
                    self.config.kafka, "output_producer", self.bootstrap_servers,
                    client_id=f"{self.config.kafka.client_id}-learner",
                )
            )  # fmt: skip
        except OutputError as exc:
            core.close()
            raise LearnerError(str(exc)) from exc
        except BaseException:
            core.close()
            raise
        try:
            consumer = clients.consumer(
                self.config.kafka, "learner_consumer", bootstrap_servers=self.bootstrap_servers,
                client_id=f"{self.config.kafka.client_id}-learner",
                group_id=self.config.learner.group_id,
                auto_offset_reset=self.config.learner.auto_offset_reset,
                partition_assignment_strategy=[RangePartitionAssignor],  # co-partitioned
                max_poll_records=self.config.learner.max_poll_records,
            )  # fmt: skip
        except BaseException:
            writer.close(timeout_s=10)
            core.close()
            raise
        # The rebalance callbacks run inside `poll`, once `_parts` is set.
        consumer.subscribe([topics.decisions, topics.feedback], listener=_Rebalance(self))
        return _Parts(core, writer, ModelPublisher(self.store, self._send_model), consumer)

    def _check_owned_slots(self) -> None:
        settings, topics = self.config.learner, self.config.kafka.topics
        others = self.checkpoints.members_owning_other_slots(
            settings.slots, (topics.decisions, topics.feedback), settings.group_id
        )
        if others:
            member, owned = next(iter(others.items()))
            raise CheckpointError(
                f"member {member!r} of group {settings.group_id!r} learns slots "
                f"{owned or 'all'}, this one {settings.slots or 'all'}: the members of a group "
                "share its partitions, so they must own the same slots; give each set of "
                "slots its own learner.group_id"
            )

    def _warm_start(self) -> tuple[dict[str, Policy], dict[str, Tuned]]:
        return warm_start_policies(self.store, learned_keys(self.config))

    def _close(self) -> None:
        if self._parts is not None:
            self._parts.close()

    # ------------------------------------------------------------------ one step
    def _step(self) -> None:
        batch = self.consumer.poll(timeout_ms=200)
        if self._fatal is not None:
            raise LearnerError(f"stopped in a rebalance: {self._fatal}") from self._fatal
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
        self._since_checkpoint += sum(by_topic.values()) + sum(out.outcomes.values())
        self._emit(out)
        self.metrics.consumed_batch(by_topic)
        # Last, so a reader who sees this status also sees the metrics of the same step.
        self._status = LearnerStatus(
            consumed=self._consumed,
            learned=dict(self.core.learned_here),
            open_decisions=self.core.open_decisions,
            lag=lag,
            checkpoints=self._checkpoints_written,
            partitions=len(self.core.joins),
        )
        self.metrics.open_decisions.set(self._status.open_decisions)

    def _advance_idle(self, out: StepOutput) -> int:
        """Close what idle inputs allow; returns the total lag."""
        decisions, feedback = self.core.topics
        now = time.time()
        total = 0
        for partition in list(self.core.joins):
            decisions_lag = self._lag(TopicPartition(decisions, partition))
            feedback_lag = self._lag(TopicPartition(feedback, partition))
            self.core.advance_idle(partition, decisions_lag == 0, feedback_lag == 0, now, out)
            total += (decisions_lag or 0) + (feedback_lag or 0)
        return total

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
        for partition, event in out.rewarded:
            # Same partition number as the inputs when the topic has it: no hashing per event.
            self._send(topics.rewarded, event.decision_id, msgspec.json.encode(event), partition)
            decisions[event.slot, event.group] += 1
            rewards[event.slot, event.group] = (
                rewards.get((event.slot, event.group), 0.0) + event.reward
            )
        for (slot, group), count in decisions.items():  # once per step, not per event
            self.metrics.rewarded.labels(slot, group).inc(count)
            self.metrics.reward.labels(slot, group).inc(rewards[slot, group])
        for dead in out.dead_letters:
            self._send(topics.deadletter, dead.key, msgspec.json.encode(dead))
            self.metrics.dead_letters.labels(dead.code).inc()
        self.writer.ship()
        self._weighed(out.weights)
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

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, in_rebalance: bool = False, final: bool = False) -> None:
        """Make every output durable, then write the checkpoint, then commit and publish.

        In a rebalance callback (kafka-python's IO thread, which must not block on the
        consumer) it neither commits nor publishes; the next regular checkpoint does.
        """
        started = time.perf_counter()
        # On the way out, a broker that is gone (a demo killed with its broker) must not hold
        # the exit for a minute: the previous checkpoint stays, and a restart continues there.
        self._flush_outputs(FINAL_FLUSH_S if final else FLUSH_S)
        try:  # VW saves through a temp file, so a full disk can fail either step
            checkpoint = self.core.checkpoint(self._seq, self.config.learner.member)
            self.checkpoints.write(checkpoint)
        except Exception as exc:  # stop before anything depends on it
            raise LearnerError(
                f"checkpoint {self._seq} could not be written in "
                f"{self.checkpoints.directory} ({type(exc).__name__}: {exc}); the previous "
                "one is intact and a restart continues from it"
            ) from exc
        self._seq += 1
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._checkpoints_written += 1
        self.metrics.checkpointed(time.perf_counter() - started, checkpoint.created_at)
        if in_rebalance:
            return
        self._commit(checkpoint.partitions)
        self._write_tallies(checkpoint)
        for slot in self.config.learned_slots:
            self.metrics.watched(slot, self._recent.lift(slot))
            self.metrics.weighed(slot, self._weights.get(slot, ()))
        if time.monotonic() - self._last_publish >= self.config.learner.publish_interval_s:
            self._last_publish = time.monotonic()
            self._publish()

    def _flush_outputs(self, timeout_s: float) -> None:
        try:
            self.writer.flush(timeout_s=timeout_s)
        except OutputError as exc:
            raise LearnerError(f"{exc}; restart from the last checkpoint") from exc

    def _commit(self, partitions: dict[int, PartitionState]) -> None:
        offsets = {}
        for partition, state in partitions.items():
            for topic, offset in zip(self.core.topics, _offsets(state), strict=True):
                if offset >= 0:  # an input not read yet keeps the group's committed offset
                    offsets[TopicPartition(topic, partition)] = OffsetAndMetadata(offset, "", -1)
        try:
            if offsets:
                self.consumer.commit(offsets)
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
                    self.store.write_tally(tally)
                except OSError as exc:  # the lift endpoint lags; the next checkpoint retries
                    log.error("writing the lift sums of %s/%d failed: %s", slot, partition, exc)
                    continue
                self._tally_progress[slot, partition] = tally.order

    # ------------------------------------------------------------------ self-tuning
    def _tuning_possible(self) -> bool:
        return bool(self.core.joins)  # none: the group has not assigned this member any

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

    def _tuning_window(self, slot: str) -> list[RewardedEvent]:
        """The slot's treatment events on the rewarded topic (this member's partitions), each
        once. A decision still open here was emitted by an earlier run (which closed it
        before a crash); it is learned when it closes here, so not in the warm start too."""
        owned = set(self.core.joins)
        found = self._rewarded_treatment(slot, partitions=owned)
        return [e for e in found if not self.core.is_open(e.decision_id)]

    # ------------------------------------------------------------------ rebalances
    # kafka-python calls these on its IO thread while `run` waits inside `poll` (or `close`),
    # so they may use the core freely but must not block on the consumer.
    def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Checkpoint first, then hand each revoked partition's state to its next owner; all
        of it before the group moves on, so the next owner finds it."""
        partitions = {tp.partition for tp in revoked} & set(self.core.joins)
        if not partitions:
            return
        if self._failed:
            log.error(
                "not handing over partitions %s: the learner is stopping on an error, so their "
                "next owner continues from the last checkpoint",
                sorted(partitions),
            )
            return
        try:
            self.checkpoint(in_rebalance=True)
            for partition in sorted(partitions):
                self.checkpoints.write_handoff(partition, self.core.revoke(partition))
        except (LearnerError, OSError) as exc:
            # The next owner continues from the previous checkpoint, so this member must not
            # learn another record: `_step` stops it before the next batch.
            log.error("could not hand over partitions %s: %s", sorted(partitions), exc)
            self._fatal = exc
            return
        self.metrics.assigned_partitions.set(len(self.core.joins))
        log.info("handed over partitions %s", sorted(partitions))

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Continue each new partition from its newest state, wherever it was written."""
        new = {tp.partition for tp in assigned} - set(self.core.joins)
        try:
            states = self.checkpoints.newest_partition_states(
                new, self.core.topics, self.config.learner.group_id
            )
        except OSError as exc:  # kafka-python would log it and go on reading those partitions
            log.error("could not read the state of partitions %s: %s", sorted(new), exc)
            self._fatal = exc
            return
        for partition in sorted(new):
            state = states.get(partition)
            self.core.assign(partition, state)
            self._since_checkpoint += 1
            for topic, offset in zip(self.core.topics, _offsets(state), strict=True):
                if offset >= 0:
                    self.consumer.seek(TopicPartition(topic, partition), offset)
        self.metrics.assigned_partitions.set(len(self.core.joins))
        log.info("joining partitions %s", sorted(self.core.joins))

    def status(self) -> LearnerStatus:
        """As of the last step (safe to read from another thread)."""
        return self._status


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
    def __init__(self, learner: KafkaLearner):
        self.learner = learner

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.learner.on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.learner.on_assigned(set(assigned))


def warm_start_policies(
    store: ModelStore, keys: Mapping[str, SlotConfig]
) -> tuple[dict[str, Policy], dict[str, Tuned]]:
    """The policies of `keys` (slots, shadows) that have a published version: the newest,
    and the tuned settings it learned under. A slot without a checkpointed model starts
    from it."""
    policies, tuning = {}, {}
    for slot, slot_config in keys.items():
        try:
            stored = store.load_latest(slot, slot_config)
        except ModelStoreError:
            continue
        policies[slot] = stored.policy
        tuning[slot] = Tuned(stored.info.tuning_revision, tuple(stored.info.tuned))
    return policies, tuning


def _offsets(state: PartitionState | None) -> tuple[int, int]:
    """Where to continue each input; -1: not read yet, start at the committed offset."""
    if state is None:
        return -1, -1
    return state.decisions_offset, state.feedback_offset


def _progress_line(status: LearnerStatus) -> str:
    learned = ", ".join(f"{slot} {count:,}" for slot, count in sorted(status.learned.items()))
    return (
        f"learner: {status.consumed:,} read, lag {status.lag:,}, "
        f"{status.open_decisions:,} open, learned {learned}, "
        f"{status.checkpoints} checkpoints, {status.partitions} partitions"
    )
