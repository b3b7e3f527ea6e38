"""The broker stops answering (SIGSTOP, state kept, as a hung or partitioned Kafka) for
longer than the group's session timeout while a learner works through a live stream: when
it answers again, the learner carries on, or restarts from its checkpoint if it had to
stop, and every example is learned exactly once."""

import os
import signal
import time

import pytest

from bandit.contracts.slots import SlotKind
from bandit.policies import build_policy
from kafkaio.embedded_broker import EmbeddedBroker
from kafkaio.produce import produce_stream
from sim.synthetic import SyntheticWorld, logged_stream
from storage.config_file import load_config
from tests.faults.harness import ROWS, FaultRow, LearnerRun
from tests.helpers import wait_for

PAUSE_S = 15.0  # well beyond session_timeout (6 s) and a poll's wait
HALF = 2_000


@pytest.mark.slow
def test_a_learner_loses_and_repeats_nothing_when_the_broker_stops_answering(
    learner_overrides, tmp_path
):
    broker = EmbeddedBroker().start()
    base = [
        *learner_overrides("slots.artwork.attribution_window_s=10", "learner.allowed_lateness_s=2"),
        f'kafka.bootstrap_servers="{broker.bootstrap_servers}"',
    ]
    config = load_config(overrides=base, environ={})
    world = SyntheticWorld(SlotKind.ARTWORK, seed=8)
    policy = build_policy(config.slots["artwork"])
    before = logged_stream(world, policy, "artwork", HALF, time.time() - 30, 0.005)
    produce_stream(config, before.events)
    run = LearnerRun(base, str(tmp_path), "pause")
    restarts = 0
    try:
        run.start()
        wait_for(lambda: run.learned_so_far() >= before.learnable // 2, 60, 0.02)
        os.kill(broker.process.pid, signal.SIGSTOP)
        time.sleep(PAUSE_S)
        os.kill(broker.process.pid, signal.SIGCONT)
        resumed_at = time.monotonic()
        after = logged_stream(world, policy, "artwork", HALF, time.time(), 0.005)  # live
        produce_stream(config, after.events)
        if run.process.poll() is not None:  # it gave up: a supervisor restarts it
            restarts += 1
            run.start()
        # recovered: it reads what was produced after the pause
        wait_for(lambda: run.metric("artbandit_learner_events_consumed_total")
                 > len(before.events), 60, 0.05)  # fmt: skip
        recovery_s = time.monotonic() - resumed_at
        total = before.impressed + after.impressed
        run.wait_until_rewarded(total)
        run.stop()
        learned = run.learned()["artwork"]
        rewarded = len(run.rewarded_ids())
    finally:
        if run.process is not None and run.process.poll() is None:
            run.kill()
        broker.stop()

    learnable = before.learnable + after.learnable
    assert learned == learnable
    assert rewarded == total
    ROWS.append(
        FaultRow(
            f"broker stops answering {PAUSE_S:.0f} s (learner)",
            f"{2 * HALF:,} decisions, live",
            None,
            max(learnable - learned, 0),
            max(learned - learnable, 0),
            recovery_s,
            f"learned exactly {learned:,}; {restarts} restarts",
        )
    )
