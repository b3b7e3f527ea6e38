"""Every metric of the learner, on an injected registry, and its /metrics endpoint.

Label values are bounded: topics and slots come from config, partitions from the topics,
outcomes and dead-letter codes from fixed sets.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from bandit.contracts.events import GROUPS
from bandit.measurement.calibration import effective_rounds
from bandit.measurement.lift import SlotLift

CHECKPOINT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# `not_owned`: a decision of a slot this learner does not own (`learner.slots`), or its feedback.
JOIN_OUTCOMES = ("rewarded", "not_impressed", "late", "duplicate", "deadletter", "not_owned")


class LearnerMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.consumed = Counter(
            "artbandit_learner_events_consumed_total",
            "Kafka messages read, by topic.",
            ["topic"],
            registry=registry,
        )
        self.joins = Counter(
            "artbandit_learner_joins_total",
            "Join outcomes: rewarded, not_impressed, late, duplicate, deadletter, not_owned.",
            ["outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "artbandit_learner_deadletters_total",
            "Messages sent to the dead-letter topic, by code.",
            ["code"],
            registry=registry,
        )
        self.examples_learned = Counter(
            "artbandit_learner_examples_learned_total",
            "Rewarded events learned, by slot (restored from the checkpoint on restart).",
            ["slot"],
            registry=registry,
        )
        self.world_changes = Counter(
            "artbandit_learner_world_changes_total",
            "Falls of a slot's treatment reward its change detector found (each raises the "
            "exploration floor for a while), since this learner started.",
            ["slot"],
            registry=registry,
        )
        self.exploration_floor = Gauge(
            "artbandit_learner_exploration_floor",
            "The exploration floor of the slot's newest published version: the configured "
            "one, or a boost's after a detected change.",
            ["slot"],
            registry=registry,
        )
        self.rewarded = Counter(
            "artbandit_learner_rewarded_decisions_total",
            "Impressed decisions joined to their rewards, by slot and holdout group.",
            ["slot", "group"],
            registry=registry,
        )
        self.reward = Counter(
            "artbandit_learner_reward_total",
            "Sum of the rewards of those decisions, by slot and group: divided by the counter "
            "above, the reward rate of treatment and control.",
            ["slot", "group"],
            registry=registry,
        )
        self.lag = Gauge(
            "artbandit_learner_consumer_lag",
            "Messages not yet read, by topic and partition.",
            ["topic", "partition"],
            registry=registry,
        )
        self.open_decisions = Gauge(
            "artbandit_learner_open_decisions",
            "Decisions whose attribution window is still open.",
            registry=registry,
        )
        self.assigned_partitions = Gauge(
            "artbandit_learner_assigned_partitions",
            "Partitions this member joins.",
            registry=registry,
        )
        self.checkpoint_seconds = Histogram(
            "artbandit_learner_checkpoint_duration_seconds",
            "Time to flush outputs and write one checkpoint.",
            buckets=CHECKPOINT_BUCKETS,
            registry=registry,
        )
        self.checkpoint_last_seconds = Gauge(
            "artbandit_learner_last_checkpoint_duration_seconds",
            "Time the newest checkpoint took (the histogram's newest observation).",
            registry=registry,
        )
        self.checkpoint_bytes = Gauge(
            "artbandit_learner_last_checkpoint_bytes",
            "Bytes the newest checkpoint wrote: its file and the new segments of open joins.",
            registry=registry,
        )
        self.checkpoint_time = Gauge(
            "artbandit_learner_last_checkpoint_timestamp_seconds",
            "When the newest checkpoint was written (Unix time).",
            registry=registry,
        )
        self.checkpoint_age = Gauge(
            "artbandit_learner_checkpoint_age_seconds",
            "Seconds since the newest checkpoint was written.",
            registry=registry,
        )
        self.checkpoint_age.set_function(self._checkpoint_age)
        self.published_version = Gauge(
            "artbandit_learner_published_version",
            "Number of the newest policy version published, by slot.",
            ["slot"],
            registry=registry,
        )
        self.tuning_revision = Gauge(
            "artbandit_learner_tuning_revision",
            "Self-tuning revision whose settings the slot's policy learns under (0: configured).",
            ["slot"],
            registry=registry,
        )
        self.tuning_wanted_revision = Gauge(
            "artbandit_learner_tuning_wanted_revision",
            "Self-tuning revision the slot's tuning history asks for (tuner or admin).",
            ["slot"],
            registry=registry,
        )
        self.tuning_switches = Counter(
            "artbandit_learner_tuning_switches",
            "Switches of a slot's policy to other tuned settings, warm-started on the log.",
            ["slot"],
            registry=registry,
        )
        self.tuning_failures = Counter(
            "artbandit_learner_tuning_failures",
            "Switches that could not be made (the log unreadable, the settings refused).",
            ["slot"],
            registry=registry,
        )
        self.calibration_gap = Gauge(
            "artbandit_learner_calibration_gap",
            "Off-policy estimate of the default policy from treatment minus control's measured "
            "reward per decision, over the calibration window; `bound` is value, low or high "
            "(95%, one look), or sequence_low or sequence_high (always-valid).",
            ["slot", "estimator", "bound"],
            registry=registry,
        )
        self.calibration_flagged = Gauge(
            "artbandit_learner_calibration_flagged",
            "1 when the calibration gap's always-valid sequence excludes 0 on enough weight to "
            "judge.",
            ["slot", "estimator"],
            registry=registry,
        )
        self.guardrail_lift = Gauge(
            "artbandit_learner_guardrail_lift",
            "Lift of an outcome per decision (clicks, plays, watch minutes), treatment over "
            "control, over the calibration window; `bound` is value, low or high (95%, one "
            "look), or sequence_low or sequence_high (always-valid).",
            ["slot", "outcome", "bound"],
            registry=registry,
        )
        self.guardrail_flagged = Gauge(
            "artbandit_learner_guardrail_flagged",
            "1 when the outcome falls significantly while the slot's reward rises significantly, "
            "both by their always-valid sequences.",
            ["slot", "outcome"],
            registry=registry,
        )
        self.replay_effective_share = Gauge(
            "artbandit_learner_replay_effective_share",
            "Effective sample size over count of the learning policy's importance weights "
            "(its probability of what was logged over the logged one) on a sample of recent "
            "treatment decisions: 1 while it decides like what logged them, near 0 when a "
            "replay of it would rest on a few of them.",
            ["slot"],
            registry=registry,
        )
        self.replay_max_weight = Gauge(
            "artbandit_learner_replay_max_weight",
            "The largest of those importance weights.",
            ["slot"],
            registry=registry,
        )
        self.calibration_effective_rounds = Gauge(
            "artbandit_learner_calibration_effective_rounds",
            "Effective sample size of the default policy's weights over the calibration window.",
            ["slot"],
            registry=registry,
        )
        self.events_per_second = Gauge(
            "artbandit_learner_events_per_second",
            "Messages read per second over the last 10 s.",
            registry=registry,
        )
        self._rate = RateWindow(10.0)
        self._last_checkpoint_at = 0.0

    def start_at_zero(self, slots: list[str]) -> None:
        """Create the series of every known label value at 0 (see ServingMetrics)."""
        for outcome in JOIN_OUTCOMES:
            self.joins.labels(outcome)
        for slot in slots:
            self.examples_learned.labels(slot)
            self.world_changes.labels(slot)
            self.tuning_switches.labels(slot)
            self.tuning_failures.labels(slot)
            for group in GROUPS:
                self.rewarded.labels(slot, group)
                self.reward.labels(slot, group)

    def watched(self, slot: str, recent: SlotLift) -> None:
        """Calibration and guardrails of the slot's recent decisions."""
        for guard in recent.guardrails:
            x = guard.lift
            for bound, value in (("value", x.value), ("low", x.low), ("high", x.high),
                                 ("sequence_low", x.sequence.low),
                                 ("sequence_high", x.sequence.high)):  # fmt: skip
                self.guardrail_lift.labels(slot, guard.outcome, bound).set(value)
            self.guardrail_flagged.labels(slot, guard.outcome).set(int(guard.flagged))
        for gap in recent.calibration:
            for bound, value in (("value", gap.value), ("low", gap.low), ("high", gap.high),
                                 ("sequence_low", gap.sequence.low),
                                 ("sequence_high", gap.sequence.high)):  # fmt: skip
                self.calibration_gap.labels(slot, gap.estimator, bound).set(value)
            self.calibration_flagged.labels(slot, gap.estimator).set(int(gap.flagged))
            self.calibration_effective_rounds.labels(slot).set(gap.effective_rounds)

    def weighed(self, slot: str, weights: Sequence[float]) -> None:
        """The learning policy's importance weights on the slot's recent sampled decisions."""
        if weights:
            values = np.asarray(weights, dtype=float)
            effective = effective_rounds(float(values.sum()), float(np.dot(values, values)))
            self.replay_effective_share.labels(slot).set(effective / len(values))
            self.replay_max_weight.labels(slot).set(float(values.max()))

    def checkpointed(self, duration_s: float, at: float, written_bytes: int) -> None:
        self.checkpoint_seconds.observe(duration_s)
        self.checkpoint_last_seconds.set(duration_s)
        self.checkpoint_bytes.set(written_bytes)
        self.checkpoint_time.set(at)
        self._last_checkpoint_at = at

    def consumed_batch(self, by_topic: dict[str, int]) -> None:
        for topic, count in by_topic.items():
            self.consumed.labels(topic).inc(count)
        self.events_per_second.set(self._rate.add(sum(by_topic.values())))

    def _checkpoint_age(self) -> float:
        last = self._last_checkpoint_at
        return time.time() - last if last else 0.0


class RateWindow:
    """Events per second over a sliding window of wall time."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()
        self._total = 0

    def add(self, count: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._samples.append((now, count))
        self._total += count
        while self._samples and self._samples[0][0] < now - self.window_s:
            self._total -= self._samples.popleft()[1]
        span = max(now - self._samples[0][0], 1.0)
        return self._total / span


class MetricsServer:
    """/metrics over HTTP in a daemon thread; port 0 picks a free port."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int):
        self.server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.port = self.server.server_port

    def stop(self) -> None:
        self.server.shutdown()  # waits for the serving thread's loop to end
        self.server.server_close()
