"""The join's segments on disk: a checkpoint names them, a restore in another process reads
them, they are deleted only once no kept checkpoint names them, and a missing one is a
clear error rather than lost decisions."""

import pytest

from bandit.learning.checkpoint import Checkpoint, PartitionState
from bandit.learning.join import RewardJoin
from bandit.learning.segments import SegmentMissingError
from learner.checkpoint_store import CheckpointStore
from tests.bandit.test_join import LATENESS, SLOTS, WINDOW, decision, feedback

KEEP = 2


def checkpoint(store: CheckpointStore, seq: int, join: RewardJoin) -> Checkpoint:
    state = PartitionState(seq, seq, join.snapshot(), {}, join.watermark)
    written = Checkpoint(
        seq=seq, created_at=float(seq), member=store.member, group_id="g",
        topics=("d", "f"), slots={}, partitions={0: state},
    )  # fmt: skip
    store.write(written)
    return written


def segment_files(store: CheckpointStore) -> set[str]:
    return {path.name for path in (store.root / "segments" / "0").glob("*.seg")}


def test_a_restore_reads_the_open_decisions_back_from_the_segments_on_disk(tmp_path):
    store = CheckpointStore(tmp_path, "m", keep=KEEP)
    join = RewardJoin(SLOTS, LATENESS, segments=store.segments(0))
    for i in range(50):
        join.add_decision(decision(f"d{i}", ts=float(i)))
        join.add_feedback(feedback(f"d{i}", "impression", ts=float(i)))
    checkpoint(store, 1, join)
    assert len(segment_files(store)) == 1

    restarted = CheckpointStore(tmp_path, "m", keep=KEEP)  # as a new process would
    state = restarted.latest().partitions[0]
    again = RewardJoin.restore(SLOTS, state.join, LATENESS, segments=restarted.segments(0))
    again.add_feedback(feedback("d7", "click", ts=60.0))
    rewarded = again.advance(WINDOW + LATENESS + 100).rewarded
    assert len(rewarded) == 50
    assert {r.decision_id: r.rewards for r in rewarded}["d7"] == [0.5]


def test_a_retired_segment_outlives_every_kept_checkpoint_that_names_it(tmp_path):
    store = CheckpointStore(tmp_path, "m", keep=KEEP)
    join = RewardJoin(SLOTS, LATENESS, segments=store.segments(0))
    join.add_decision(decision("early", ts=0.0))
    checkpoint(store, 1, join)
    first = segment_files(store)
    join.add_decision(decision("late", ts=5000.0))
    join.advance(5000.0)  # "early" closed and forgotten
    second = checkpoint(store, 2, join)  # retires the first segment; checkpoint 1 names it
    assert first <= segment_files(store)
    third = checkpoint(store, 3, join)  # kept: 2 and 3, neither names it
    assert not first & segment_files(store) and len(segment_files(store)) == 1
    for kept in (second, third):  # every kept checkpoint still restores
        state = kept.partitions[0].join
        restored = RewardJoin.restore(SLOTS, state, LATENESS, segments=store.segments(0))
        assert restored.is_open("late") and not restored.is_open("early")


def test_a_missing_segment_stops_with_a_message_that_names_it(tmp_path):
    store = CheckpointStore(tmp_path, "m", keep=KEEP)
    join = RewardJoin(SLOTS, LATENESS, segments=store.segments(0))
    join.add_decision(decision("d1"))
    state = checkpoint(store, 1, join).partitions[0]
    for path in (tmp_path / "segments" / "0").glob("*.seg"):
        path.unlink()
    restored = RewardJoin.restore(SLOTS, state.join, LATENESS, segments=store.segments(0))
    with pytest.raises(SegmentMissingError, match=r"segments/0/m-.*\.seg is missing"):
        restored.add_feedback(feedback("d1", "impression"))


def test_the_segment_directory_is_no_member(tmp_path):
    store = CheckpointStore(tmp_path, "m", keep=KEEP)
    join = RewardJoin(SLOTS, LATENESS, segments=store.segments(0))
    join.add_decision(decision("d1"))
    checkpoint(store, 1, join)
    assert store.members_owning_other_slots([], ("d", "f"), "g") == {}
    assert set(store.newest_partition_states({0}, ("d", "f"), "g")) == {0}
