"""The learner's checkpoint types: its whole state (models, offsets, open joins) at one step.

They are plain data; `learner.checkpoint_store` writes and reads them as verified files.
"""

from __future__ import annotations

import msgspec

from bandit.measurement.tallies import SlotTallies


class CheckpointError(RuntimeError):
    """The checkpoint directory cannot be used (locked by another member, wrong topics)."""


class SlotState(msgspec.Struct, frozen=True):
    """One slot's policy as of the checkpoint, and how many examples this member learned."""

    policy_type: str
    model: bytes
    examples_learned: int
    learned_here: int
    # the self-tuning revision, and its overrides, that the model learned under
    tuning_revision: int = 0
    tuned: list[str] = []
    # a raised exploration floor after a detected change (bandit.policies.base.Boost)
    boost_floor: float = 0.0
    boost_until: int = 0


class PartitionState(msgspec.Struct, frozen=True):
    """Where a partition's inputs were read to, and its open joins at that point."""

    decisions_offset: int
    feedback_offset: int
    join: bytes
    # the lift report's sums of this partition's rewarded events (slot -> period -> group)
    lift: SlotTallies = {}
    watermark: float = -1.0  # the join's event time, which moves on when inputs are idle

    @property
    def progress(self) -> int:
        """Offsets only move forward, so the larger sum is the newer state of a partition."""
        return self.decisions_offset + self.feedback_offset

    @property
    def order(self) -> tuple[int, float]:
        """Newer states sort later: by progress, then by event time (an idle partition's
        windows close, and its segments are retired, without reading a record)."""
        return self.progress, self.watermark


class Checkpoint(msgspec.Struct, frozen=True):
    seq: int
    created_at: float
    member: str
    group_id: str
    topics: tuple[str, str]  # (decisions, feedback): offsets mean nothing for other topics
    slots: dict[str, SlotState]
    partitions: dict[int, PartitionState]
    owned: list[str] = []  # `learner.slots` of the member that wrote it ([]: every slot)
