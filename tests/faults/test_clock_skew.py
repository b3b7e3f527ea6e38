"""Skewed clocks on a live stream: serving replicas stamping decisions seconds fast or slow,
and devices stamping feedback fast or slow. Skew within the window plus the allowed lateness
loses nothing; feedback stamped beyond it is dead-lettered as late, each one counted."""

import random
import time
from collections import Counter

import msgspec
import pytest

from bandit.contracts import events
from bandit.contracts.events import FeedbackEvent
from bandit.contracts.slots import SlotKind
from bandit.policies import build_policy
from kafkaio.produce import produce_stream
from sim.synthetic import SyntheticWorld
from storage.config_file import load_config
from tests.faults.harness import ROWS, FaultRow
from tests.helpers import read_all, running_learner, wait_for

DECISIONS = 600
REPLICA_SKEW_S = 4.0  # replica A runs this much fast, replica B this much slow
DEVICE_SKEW_S = 8.0  # devices anywhere within +-this
FAR_AHEAD_S = 30.0  # beyond window (10 s) + lateness (5 s): these impressions are late
FAR_AHEAD = 25


@pytest.mark.slow
def test_clock_skew_within_the_window_loses_nothing_and_beyond_it_is_counted(learner_overrides):
    config = load_config(
        overrides=learner_overrides(
            "slots.artwork.attribution_window_s=10", "learner.allowed_lateness_s=5"
        ),
        environ={},
    )
    world = SyntheticWorld(SlotKind.ARTWORK, seed=6)
    policy = build_policy(config.slots["artwork"])
    rng = random.Random(6)
    now = time.time()
    stream: list[events.DecisionEvent | FeedbackEvent] = []
    for n in range(DECISIONS):
        round_ = world.draw()
        replica_skew = REPLICA_SKEW_S if n % 2 else -REPLICA_SKEW_S
        decision = msgspec.structs.replace(
            world.decision_event(round_, policy.decide(round_.context, round_.candidates),
                                 "artwork"),
            decision_id=f"skew-{n:05d}", ts=now + replica_skew,
        )  # fmt: skip
        device = FAR_AHEAD_S if n < FAR_AHEAD else rng.uniform(-DEVICE_SKEW_S, DEVICE_SKEW_S)
        stream.append(decision)
        stream.append(FeedbackEvent(decision_id=decision.decision_id, ts=now + 1 + device,
                                    type="impression"))  # fmt: skip
    produce_stream(config, stream)
    topics = config.kafka.topics
    with running_learner(config) as learner:
        wait_for(lambda: learner.status().open_decisions == 0
                 and learner.status().consumed == 2 * DECISIONS, timeout_s=60)  # fmt: skip
    rewarded = [events.decode(v, events.RewardedEvent).decision_id
                for v in read_all(config.kafka.bootstrap_servers, topics.rewarded)]  # fmt: skip
    dead = Counter(events.decode(v, events.DeadLetterEvent).code
                   for v in read_all(config.kafka.bootstrap_servers, topics.deadletter))  # fmt: skip

    expected = {f"skew-{n:05d}" for n in range(FAR_AHEAD, DECISIONS)}
    assert len(rewarded) == len(set(rewarded))
    assert set(rewarded) == expected  # every impression within the bound, joined once
    assert dead == {"late": FAR_AHEAD}  # the rest, each one named
    ROWS.append(
        FaultRow(
            f"clock skew: replicas +-{REPLICA_SKEW_S:.0f} s, devices +-{DEVICE_SKEW_S:.0f} s",
            f"{DECISIONS} decisions on a live stream",
            None,
            len(expected - set(rewarded)),
            len(rewarded) - len(set(rewarded)),
            None,
            f"{FAR_AHEAD} impressions stamped {FAR_AHEAD_S:.0f} s ahead: dead-lettered as late",
        )
    )
