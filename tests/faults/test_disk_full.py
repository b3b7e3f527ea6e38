"""The disk fills while a learner writes a checkpoint: it stops with a clear error, the
checkpoint before stays valid (no torn file, no temp file left), and once there is room a
restart continues from it and learns every example exactly once."""

import time

import msgspec
import pytest

from learner.checkpoint_store import CheckpointStore
from tests.faults.harness import ROWS, FaultRow, LearnerRun, artwork_backlog
from tests.helpers import wait_for

DECISIONS = 8_000


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_loses_nothing(
    learner_overrides,
):
    base = learner_overrides("learner.checkpoint_interval_s=0.3", "learner.max_poll_records=200")
    config, stream = artwork_backlog(base, seed=5, decisions=DECISIONS)
    run = LearnerRun(base, config.learner.checkpoint_dir, "diskfull")
    member = run.config.learner
    store = CheckpointStore(member.checkpoint_dir, member.member)

    run.start()
    wait_for(lambda: run.learned_so_far() >= stream.learnable // 4, timeout_s=90, interval_s=0.02)
    run.kill()
    before = store.latest()
    # Room for VW's temp copy of a model (restoring goes through one), not for a checkpoint.
    room = max(len(state.model) for state in before.slots.values()) + 4096
    assert room < len(msgspec.msgpack.encode(before))

    run.start(max_file_bytes=room)
    error = run.process.communicate(timeout=90)[1].decode()
    assert run.process.returncode == 1, error[-2000:]
    assert f"checkpoint {before.seq + 1} could not be written" in error, error[-2000:]
    assert "the previous one is intact" in error
    after = store.latest()
    assert after is not None and after.seq == before.seq  # still there, still verifies
    assert not list(store.directory.glob(".tmp-*"))  # the torn attempt is gone

    restarted = time.monotonic()
    run.start()
    wait_for(lambda: run.learned_so_far() > before.slots["artwork"].learned_here, 90, 0.02)
    recovery_s = time.monotonic() - restarted
    run.wait_until_rewarded(stream.impressed)
    run.stop()
    learned = run.learned()["artwork"]
    assert learned == stream.learnable
    assert len(run.rewarded_ids()) == stream.impressed
    ROWS.append(
        FaultRow(
            "disk full during a checkpoint",
            f"{DECISIONS:,} decisions, {stream.learnable:,} learnable",
            None,
            max(stream.learnable - learned, 0),
            max(learned - stream.learnable, 0),
            recovery_s,
            f"learner exits 1 naming checkpoint {before.seq + 1}; checkpoint {before.seq} "
            "intact; restarted, learned exactly all",
        )
    )
