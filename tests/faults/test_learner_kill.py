"""Exactly once under SIGKILL: a learner killed at 10 random points of a 20,000-decision
stream ends with the same examples learned and the same rewarded events as a run without
faults; the rewarded topic may repeat events after a crash but never misses one."""

import os
import random
import signal
import subprocess
import sys
import time

import msgspec
from kafka import KafkaConsumer

from bandit import events
from bandit.config import load_config
from bandit.embedded_broker import free_port
from bandit.learner.checkpoint import CheckpointStore
from bandit.policies import build_policy
from bandit.slots import SlotKind
from bandit.stream_io import produce_stream
from bandit.synthetic import SyntheticWorld, logged_stream
from tests.faults.harness import ROWS, FaultRow
from tests.helpers import Client, metric_value, read_all, wait_for

DECISIONS = 20_000
KILLS = 10


def test_sigkill_at_random_points_learns_every_rewarded_event_exactly_once(learner_overrides):
    # Small polls, so the learner's progress is fine-grained enough to kill it mid-stream.
    base = learner_overrides("learner.checkpoint_interval_s=0.3", "learner.max_poll_records=200")
    config = load_config(overrides=base, environ={})
    world = SyntheticWorld(SlotKind.ARTWORK, seed=3, candidates_per_round=10, catalogue_size=200)
    stream = logged_stream(
        world, build_policy(config.slots["artwork"]), "artwork", DECISIONS,
        start_ts=time.time() - 7200, spacing_s=0.05,
    )  # fmt: skip
    produce_stream(config, stream.events)

    clean = _Run(base, config.learner.checkpoint_dir, "clean")
    clean.start()
    clean.wait_until_rewarded(stream.impressed)
    clean.stop()

    # Kill points: random amounts of learning, plus a random fraction of a batch or checkpoint.
    rng = random.Random(11)
    # (the last well before the end: a learner replaying from its checkpoint runs fast)
    targets = sorted(rng.sample(range(stream.learnable // 20, stream.learnable * 6 // 10), KILLS))
    faulty = _Run(base, config.learner.checkpoint_dir, "faulty")
    learned_at_kills = []
    recoveries = []  # from a restart until it has learned again all it had when killed
    for target in targets:
        faulty.start()
        if learned_at_kills:
            started = time.monotonic()
            wait_for(lambda: faulty.learned_so_far() >= learned_at_kills[-1], 90, 0.02)
            recoveries.append(time.monotonic() - started)
        wait_for(lambda t=target: faulty.learned_so_far() >= t, timeout_s=90, interval_s=0.02)
        time.sleep(rng.uniform(0.0, 0.05))
        learned_at_kills.append(faulty.learned_so_far())
        faulty.kill()
    faulty.start()
    faulty.wait_until_rewarded(stream.impressed)
    faulty.stop()

    assert all(count < stream.learnable for count in learned_at_kills), learned_at_kills
    assert (
        clean.learned() == faulty.learned() == {"artwork": stream.learnable, "hero": 0, "rows": 0}
    )
    assert clean.rewarded() == faulty.rewarded()
    assert len(faulty.rewarded_ids()) == stream.impressed
    learned = faulty.learned()["artwork"]
    ROWS.append(
        FaultRow(
            f"learner SIGKILL x{KILLS} at random points",
            f"{DECISIONS:,} decisions, {stream.learnable:,} learnable",
            None,
            max(stream.learnable - learned, 0),
            max(learned - stream.learnable, 0),
            max(recoveries),
            f"learned exactly {learned:,}; rewarded events equal to a run without faults",
        )
    )


class _Run:
    """One learner lineage (its own group, checkpoints and output topics) as subprocesses."""

    def __init__(self, base: list[str], root: str, name: str):
        self.name = name
        self.overrides = [
            *base,
            f'learner.group_id="{name}-{os.getpid()}-{time.time_ns()}"',
            f'kafka.topics.rewarded="rewarded-{name}-{time.time_ns()}"',
            f'kafka.topics.deadletter="deadletter-{name}-{time.time_ns()}"',
            f'kafka.topics.models="models-{name}-{time.time_ns()}"',
            f'learner.checkpoint_dir="{root}/{name}"',
            f'model_store.path="{root}/{name}-models"',
        ]
        self.config = load_config(overrides=self.overrides, environ={})
        consumer = KafkaConsumer(bootstrap_servers=self.config.kafka.bootstrap_servers)
        self.partitions = len(consumer.partitions_for_topic(self.config.kafka.topics.decisions))
        consumer.close()
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> None:
        self.port = free_port()
        args = [f"--set={o}" for o in [*self.overrides, f"learner.metrics_port={self.port}"]]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bandit.cli", "learn", "--quiet", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(60) == 0

    def learned_so_far(self) -> float:
        """This lineage's examples learned (restored from its checkpoint, then counted on)."""
        assert self.process.poll() is None, f"learner exited with {self.process.returncode}"
        try:
            text = Client("127.0.0.1", self.port).get("/metrics")[1]
        except OSError:  # not listening yet
            return 0
        return metric_value(text, "artbandit_learner_examples_learned_total")

    def rewarded(self) -> dict[str, tuple]:
        """Deduplicated by decision_id, as replay reads the topic."""
        out = {}
        for value in read_all(
            self.config.kafka.bootstrap_servers, self.config.kafka.topics.rewarded, 1.0
        ):
            event = events.decode(value, events.RewardedEvent)
            out[event.decision_id] = msgspec.to_builtins(event)
        return out

    def rewarded_ids(self) -> set[str]:
        return set(self.rewarded())

    def wait_until_rewarded(self, count: int) -> None:
        """Until the topic holds every rewarded event and this learner has caught up (a killed
        predecessor's outputs may already be on the topic before its successor re-learns)."""
        wait_for(
            lambda: (len(self.rewarded_ids()) >= count and self.caught_up())
            or self.process.poll() is not None,
            timeout_s=240, interval_s=1.0,
        )  # fmt: skip
        assert self.process.poll() is None, f"learner exited with {self.process.returncode}"

    def caught_up(self) -> bool:
        """Both inputs read to their ends on every partition, and no window left open."""
        try:
            text = Client("127.0.0.1", self.port).get("/metrics")[1]
        except OSError:
            return False
        lag_series = [
            line for line in text.splitlines() if line.startswith("artbandit_learner_consumer_lag{")
        ]
        return (
            len(lag_series) == 2 * self.partitions
            and metric_value(text, "artbandit_learner_consumer_lag") == 0
            and metric_value(text, "artbandit_learner_open_decisions") == 0
        )

    def learned(self) -> dict[str, int]:
        learner = self.config.learner
        checkpoint = CheckpointStore(learner.checkpoint_dir, learner.member).latest()
        return {slot: state.learned_here for slot, state in checkpoint.slots.items()}
