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

import threading
from typing import Unpack

from bandit.config import Config
from bandit.learning.learner_core import LearnerCore
from bandit.measurement.lift import RecentTallies
from learner.member import GroupMember, LearnerStatus
from learner.process import LearnerError, LearnerOptions, LearnerResources, ResourceViews

__all__ = ["KafkaLearner", "LearnerError", "LearnerStatus"]


class KafkaLearner(ResourceViews):
    """One member of the learner group. `run(stop)` until `stop` is set, then checkpoint,
    leave the group and return. Everything it opens is built whole when it runs
    (`GroupMember.open`), or it fails before the first record."""

    def __init__(self, config: Config, bootstrap_servers: str, **options: Unpack[LearnerOptions]):
        self.resources = LearnerResources(config, bootstrap_servers, **options)
        self.config = config
        self.metrics.start_at_zero(list(config.slots))
        self._recent = RecentTallies(config.learner.recent_window_s)  # calibration, guardrails
        self._status = LearnerStatus(0, {}, 0, 0, 0, 0, 0)
        self._running: GroupMember | None = None  # for inspection only: `core`

    @property
    def core(self) -> LearnerCore:
        """The running member's core, to inspect from another thread (tests, tools)."""
        if self._running is None:
            raise LearnerError("the learner is not running")
        return self._running.core

    def run(self, stop: threading.Event) -> None:
        with self.resources.running():
            member = GroupMember.open(self.resources, self._recent, self._report)
            self._running = member
            try:
                self.ready.set()
                member.run_until(stop)
            except BaseException:
                # the batch it was in may be half done (windows closed, examples learned,
                # outputs not yet acknowledged): nothing may checkpoint or hand that state
                # over, and leaving the group below revokes its partitions
                member.failed = True
                raise
            finally:
                self._running = None
                member.close()

    def status(self) -> LearnerStatus:
        """As of the last step (safe to read from another thread)."""
        return self._status

    def _report(self, status: LearnerStatus) -> None:
        self._status = status
