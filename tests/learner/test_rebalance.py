"""A second learner joins the group mid-stream and leaves again: partitions move with their
open joins (checkpointed, handed over), so together they learn every example exactly once."""

import time

import msgspec

from bandit.contracts import events
from bandit.contracts.slots import SlotKind
from bandit.policies import build_policy
from kafkaio.produce import produce_stream
from learner.checkpoint_store import CheckpointStore
from sim.synthetic import SyntheticWorld, logged_stream
from tests.helpers import read_all, running_learner, wait_for

DECISIONS = 30_000


def test_a_member_joining_and_leaving_keeps_every_example_learned_exactly_once(learner_config):
    base = (
        "learner.partitions=4",
        "learner.checkpoint_interval_s=1",
        "learner.max_poll_records=500",
    )
    first = learner_config(*base, "learner.member=first")
    second = msgspec.structs.replace(
        first, learner=msgspec.structs.replace(first.learner, member="second")
    )
    world = SyntheticWorld(SlotKind.ARTWORK, seed=21, candidates_per_round=10, catalogue_size=200)
    stream = logged_stream(
        world, build_policy(first.slots["artwork"]), "artwork", DECISIONS, time.time() - 7200, 0.05
    )
    produce_stream(first, stream.events)
    with running_learner(first) as one:
        wait_for(lambda: one.status().learned.get("artwork", 0) > 1_000, 60)
        with running_learner(second) as two:
            wait_for(lambda: two.status().partitions > 0, 60)
            # the first member's status catches up with its new assignment at its next step
            wait_for(lambda: one.status().partitions + two.status().partitions == 4, 30)
            wait_for(lambda: two.status().learned.get("artwork", 0) > 500, 60)
        # The second member checkpointed, handed its partitions over and left the group.
        second_learned = _learned(second)
        assert second_learned > 500
        wait_for(lambda: one.status().partitions == 4, 60)
        wait_for(
            lambda: one.status().learned.get("artwork", 0) + second_learned == stream.learnable,
            120,
        )
    assert _learned(first) + second_learned == stream.learnable
    rewarded = {
        events.decode(v, events.RewardedEvent).decision_id
        for v in read_all(first.kafka.bootstrap_servers, first.kafka.topics.rewarded, 1.0)
    }
    assert len(rewarded) == stream.impressed


def _learned(config) -> int:
    learner = config.learner
    checkpoint = CheckpointStore(learner.checkpoint_dir, learner.member).latest()
    return checkpoint.slots["artwork"].learned_here
