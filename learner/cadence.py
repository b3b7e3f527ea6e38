"""When a learner checkpoints, publishes and reads its slots' tuning history.

A checkpoint is due after `learner.checkpoint_every_events` records (or closed windows),
or `learner.checkpoint_interval_s` after the last one when anything happened since; a
publish after `learner.publish_interval_s`; the tuning history is read right after a
checkpoint, at most once per checkpoint interval (a failed switch waits longer). A switch
forces the next checkpoint and publish at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bandit.config import LearnerConfig


@dataclass
class Cadence:
    settings: LearnerConfig
    seq: int = 1  # of the next checkpoint
    since: int = 0  # records read or windows closed since the last checkpoint
    checkpoints_written: int = 0
    last_checkpoint: float = field(default_factory=time.monotonic)
    last_publish: float = float("-inf")
    next_tuning: float = float("-inf")

    def count(self, events: int) -> None:
        self.since += events

    def checkpoint_due(self) -> bool:
        if self.since == 0:
            return False  # nothing read or closed since the last one
        return self.since >= self.settings.checkpoint_every_events or (
            time.monotonic() - self.last_checkpoint >= self.settings.checkpoint_interval_s
        )

    def checkpointed(self) -> None:
        self.seq += 1
        self.since = 0
        self.last_checkpoint = time.monotonic()
        self.checkpoints_written += 1

    def publish_due(self) -> bool:
        """Whether to publish now; if so, the interval starts again."""
        if time.monotonic() - self.last_publish < self.settings.publish_interval_s:
            return False
        self.last_publish = time.monotonic()
        return True

    def force(self) -> None:
        """Checkpoint and publish at the next chance (after a switch of settings)."""
        self.since += 1
        self.last_checkpoint = float("-inf")
        self.last_publish = float("-inf")

    def tuning_due(self) -> bool:
        """Right after a checkpoint (every output acknowledged), once per interval."""
        return self.since == 0 and time.monotonic() >= self.next_tuning

    def tuning_read(self, retry_s: float | None = None) -> None:
        """The history was read; the next read comes a checkpoint interval (or `retry_s`)
        later."""
        delay = self.settings.checkpoint_interval_s if retry_s is None else retry_s
        self.next_tuning = time.monotonic() + delay
