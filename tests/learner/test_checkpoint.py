"""Checkpoint files: atomic, verified, newest good one wins; one writer per member."""

import tempfile
import time

import msgspec
import pytest

from bandit.learning.checkpoint import Checkpoint, CheckpointError, PartitionState, SlotState
from bandit.learning.learner_core import LearnerCore
from bandit.learning.rewarded_learning import RewardedLearnerCore
from learner.checkpoint_store import CheckpointStore
from storage.config_file import load_config


def checkpoint(seq: int, member: str = "m", progress: int = 0) -> Checkpoint:
    return Checkpoint(
        seq=seq, created_at=float(seq), member=member, group_id="g", topics=("d", "f"),
        slots={"artwork": SlotState("vw", b"model", seq, seq)},
        partitions={0: PartitionState(progress, progress, b"join")},
    )  # fmt: skip


def test_a_torn_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    store = CheckpointStore(tmp_path, "m", keep=3)
    store.write(checkpoint(1))
    newest = store.write(checkpoint(2))
    newest.write_bytes(newest.read_bytes()[:-3])  # a crash mid-write, or a bad disk
    assert store.latest().seq == 1
    assert store.next_seq() == 3  # numbering never reuses a torn file's name


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    store = CheckpointStore(tmp_path, "m", keep=2)
    for seq in range(1, 6):
        store.write(checkpoint(seq))
    assert sorted(p.name for p in store.directory.glob("checkpoint-*")) == [
        "checkpoint-0000000004.bin",
        "checkpoint-0000000005.bin",
    ]


def test_a_partition_continues_from_its_most_advanced_state_in_the_group(tmp_path):
    CheckpointStore(tmp_path, "a").write(checkpoint(7, "a", progress=10))
    CheckpointStore(tmp_path, "b").write(checkpoint(3, "b", progress=40))
    store = CheckpointStore(tmp_path, "c")
    assert store.newest_partition_states({0, 1}, ("d", "f"), "g")[0].decisions_offset == 40
    store.write_handoff(0, PartitionState(50, 50, b"join"))
    assert store.newest_partition_states({0}, ("d", "f"), "g")[0].decisions_offset == 50
    assert store.newest_partition_states({0}, ("other", "f"), "g")[0].decisions_offset == 50
    assert 1 not in store.newest_partition_states({0, 1}, ("d", "f"), "g")


def test_two_learners_cannot_share_a_member_directory(tmp_path):
    first = CheckpointStore(tmp_path, "m")
    first.lock()
    with pytest.raises(CheckpointError, match=r"learner\.member"):
        CheckpointStore(tmp_path, "m").lock()
    first.unlock()
    CheckpointStore(tmp_path, "m").lock()


def test_a_model_that_cannot_be_restored_for_lack_of_disk_stops_rather_than_starts_over(
    monkeypatch, tmp_path
):
    config = load_config(environ={})
    core = LearnerCore(config, clock=time.time)
    saved = core.checkpoint(1, "m")
    core.close()
    # VW restores a model through a temp file; a temp directory that cannot be written
    # stands for a full disk. Starting the slot over would silently lose what it learned.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "full"))
    with pytest.raises(CheckpointError, match="cannot load the checkpointed model"):
        LearnerCore.from_checkpoint(config, saved, clock=time.time)


@pytest.mark.parametrize("core_class", ["group", "rewarded"])
def test_a_slot_whose_tuned_settings_or_model_no_longer_load_starts_over(core_class):
    config = load_config(environ={}, overrides=['learner.slots=["artwork", "hero"]'])

    def restored(saved):
        if core_class == "group":
            return LearnerCore.from_checkpoint(config, saved, clock=time.time)
        return RewardedLearnerCore.from_checkpoint(config, "rewarded", saved, clock=time.time)

    core = restored(LearnerCore(config, clock=time.time).checkpoint(1, "m"))
    saved = core.checkpoint(2, "m")
    core.close()
    slots = dict(saved.slots)
    slots["artwork"] = msgspec.structs.replace(
        slots["artwork"], examples_learned=7, tuning_revision=3, tuned=["kind=rows"]
    )
    slots["hero"] = msgspec.structs.replace(slots["hero"], examples_learned=7, model=b"junk")
    core = restored(msgspec.structs.replace(saved, slots=slots))
    for slot in ("artwork", "hero"):  # both start over, under the configured settings
        assert core.policies[slot].examples_learned == 0
        assert core.tuned(slot).revision == 0
    core.close()
