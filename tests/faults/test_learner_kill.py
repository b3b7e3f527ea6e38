"""Exactly once under SIGKILL: a learner killed at 10 random points of a 10,000-decision
stream ends with the same examples learned and the same rewarded events as a run without
faults; the rewarded topic may repeat events after a crash but never misses one, and the lift
endpoint's running sums are those of the run without faults."""

import random
import time

from tests.faults.harness import ROWS, FaultRow, LearnerRun, artwork_backlog
from tests.helpers import wait_for

DECISIONS = 10_000
KILLS = 10


def test_sigkill_at_random_points_learns_every_rewarded_event_exactly_once(learner_overrides):
    # Small polls, so the learner's progress is fine-grained enough to kill it mid-stream.
    base = learner_overrides("learner.checkpoint_interval_s=0.3", "learner.max_poll_records=200")
    config, stream = artwork_backlog(base, seed=3, decisions=DECISIONS)

    clean = LearnerRun(base, config.learner.checkpoint_dir, "clean")
    clean.start()
    clean.wait_until_rewarded(stream.impressed)
    clean.stop()

    # Kill points: random amounts of learning, plus a random fraction of a batch or checkpoint.
    rng = random.Random(11)
    # (the last well before the end: a learner replaying from its checkpoint runs fast)
    targets = sorted(rng.sample(range(stream.learnable // 20, stream.learnable * 6 // 10), KILLS))
    faulty = LearnerRun(base, config.learner.checkpoint_dir, "faulty")
    learned_at_kills = []
    recoveries = {}  # restart -> seconds until it has learned again all it had when killed
    for target in targets:
        faulty.start()
        started, previous = time.monotonic(), learned_at_kills[-1] if learned_at_kills else None

        def reached(target=target, started=started, previous=previous) -> bool:
            """Seen on the way to the target (no extra wait: that would move the kills on)."""
            learned = faulty.learned_so_far()
            if previous is not None and learned >= previous:
                recoveries.setdefault(len(learned_at_kills), time.monotonic() - started)
            return learned >= target

        wait_for(reached, timeout_s=90, interval_s=0.02)
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
    # the lift endpoint's sums count each rewarded event once, killed or not
    assert faulty.lift_sums() == clean.lift_sums()
    assert sum(sum(d) for d, _ in faulty.lift_sums().values()) == stream.impressed
    learned = faulty.learned()["artwork"]
    ROWS.append(
        FaultRow(
            f"learner SIGKILL x{KILLS} at random points",
            f"{DECISIONS:,} decisions, {stream.learnable:,} learnable",
            None,
            max(stream.learnable - learned, 0),
            max(learned - stream.learnable, 0),
            max(recoveries.values(), default=None),
            f"learned exactly {learned:,}; rewarded events equal to a run without faults",
        )
    )
