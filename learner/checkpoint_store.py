"""Checkpoints: the learner's whole state (models, offsets, open joins) in one file per step.

A checkpoint is written to a temp file, fsynced and renamed into place, so a crash at any
moment leaves the previous checkpoint whole; a file that does not verify (magic, SHA-256) is
skipped in favour of the one before it. Members of one consumer group share `root`: each
writes under `<root>/<member>/`, and a partition handed over on a rebalance is also written
to `<root>/partitions/<n>.state`, so its next owner continues its open joins from wherever
the newest state of that partition is. The open decisions themselves are in segments
(`learner.segment_files`, under `<root>/segments/`), which a checkpoint names but never
rewrites: it costs what changed since the one before.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import TypeVar

import msgspec

from bandit.learning.checkpoint import Checkpoint, CheckpointError, PartitionState
from learner.segment_files import SegmentFiles
from storage.durable import replace_file

T = TypeVar("T")
log = logging.getLogger(__name__)

MAGIC = b"artbandit-checkpoint/1\n"
_SEGMENTS = "segments"  # the group's segment directories, beside the members'
_NAME = re.compile(r"^checkpoint-(\d{10})\.bin$")


class CheckpointStore:
    """This member's checkpoints under `<root>/<member>/`, plus the group's partition handoffs."""

    def __init__(self, root: str | os.PathLike[str], member: str, keep: int = 3):
        self.root = Path(root)
        self.member = member
        self.keep = keep
        self.directory = self.root / member
        self._lock_fd: int | None = None
        self.segments = SegmentFiles(self.root / _SEGMENTS, member, keep)
        self.written_bytes = 0  # the newest checkpoint's file, for the checkpoint-size metric

    def lock(self) -> None:
        """Hold this member's directory for the life of the process (released by the kernel
        even on SIGKILL), so two learners never write the same member's checkpoints."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CheckpointError(
                f"{self.directory} is in use by another learner; give each member its own "
                "learner.member"
            ) from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self.segments.close()

    def write(self, checkpoint: Checkpoint) -> Path:
        """Write `checkpoint` durably and atomically, then delete the oldest beyond `keep`."""
        assert checkpoint.member == self.member, "a member writes only its own checkpoints"
        path = self.directory / f"checkpoint-{checkpoint.seq:010d}.bin"
        self.written_bytes = _write_file(path, msgspec.msgpack.encode(checkpoint))
        self.segments.committed()
        for old in self._files()[: -self.keep]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
        return path

    def latest(self, member: str | None = None) -> Checkpoint | None:
        """The newest checkpoint of `member` (default: this one) that verifies, else None."""
        for path in reversed(self._files(member)):
            checkpoint = _read_file(path, Checkpoint)
            if checkpoint is not None:
                return checkpoint
        return None

    def write_handoff(self, partition: int, state: PartitionState) -> None:
        """Leave a revoked partition's state where its next owner looks."""
        _write_file(self.root / "partitions" / f"{partition}.state", msgspec.msgpack.encode(state))

    def newest_partition_states(
        self, partitions: set[int], topics: tuple[str, str], group_id: str
    ) -> dict[int, PartitionState]:
        """The most advanced known state of each of `partitions` that has one: from a handoff,
        or from the newest checkpoint of any member of the group (one that died without
        handing it over). Each member's checkpoint is read once."""
        newest: dict[int, PartitionState] = {}

        def consider(partition: int, state: PartitionState) -> None:
            if partition not in newest or state.order > newest[partition].order:
                newest[partition] = state

        for partition in partitions:
            handoff = _read_file(self.root / "partitions" / f"{partition}.state", PartitionState)
            if handoff is not None:
                consider(partition, handoff)
        for member in self._members():
            checkpoint = self.latest(member)
            if checkpoint is None or checkpoint.topics != topics or checkpoint.group_id != group_id:
                continue
            for partition in partitions & checkpoint.partitions.keys():
                consider(partition, checkpoint.partitions[partition])
        return newest

    def members_owning_other_slots(
        self, owned: list[str], topics: tuple[str, str], group_id: str
    ) -> dict[str, list[str]]:
        """Other members of the group whose newest checkpoint owns other slots than `owned`:
        a group whose members split partitions must learn the same slots everywhere."""
        others = {}
        for member in self._members():
            checkpoint = None if member == self.member else self.latest(member)
            if checkpoint is None or checkpoint.topics != topics or checkpoint.group_id != group_id:
                continue
            if sorted(checkpoint.owned) != sorted(owned):
                others[member] = checkpoint.owned
        return others

    def _members(self) -> list[str]:
        if not self.root.is_dir():
            return []
        shared = {"partitions", _SEGMENTS}
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name not in shared)

    def _files(self, member: str | None = None) -> list[Path]:
        directory = self.root / (member or self.member)
        if not directory.is_dir():
            return []
        return sorted(p for p in directory.iterdir() if _NAME.match(p.name))

    def next_seq(self) -> int:
        files = self._files()
        if not files:
            return 1
        match = _NAME.match(files[-1].name)
        assert match is not None  # _files keeps only matching names
        return int(match.group(1)) + 1


def _write_file(path: Path, body: bytes) -> int:
    digest = hashlib.sha256(body).hexdigest().encode()
    data = MAGIC + digest + b"\n" + body
    replace_file(path, data)
    return len(data)


def _read_file(path: Path, type_: type[T]) -> T | None:
    """The decoded file, or None (with a warning) when it is missing, torn or altered."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    digest, sep, body = data[len(MAGIC) :].partition(b"\n")
    if not data.startswith(MAGIC) or not sep or hashlib.sha256(body).hexdigest().encode() != digest:
        log.warning("skipping %s: it does not verify (torn or altered)", path)
        return None
    try:
        return msgspec.msgpack.decode(body, type=type_)
    except msgspec.DecodeError as exc:
        log.warning("skipping %s: %s", path, exc)
        return None
