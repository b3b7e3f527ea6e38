"""The join's segments on disk: `<checkpoint root>/segments/<partition>/<member>-<id>.seg`.

A segment is written whole (temp file, fsync, rename, directory fsync) before the
checkpoint that names it, and never changed, so a crash at any moment leaves every
checkpoint's segments whole; one written for a checkpoint that never landed is never named.
The directories are the group's, like the partition handoffs: the next owner of a partition
reads the segments its last owner wrote. A retired segment is deleted only after `keep`
more checkpoints of this member, so every checkpoint kept for a fallback still has its own.
Reads go through a few descriptors kept open (pread: no seek, no buffering).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import OrderedDict
from pathlib import Path

from bandit.learning.segments import SegmentMissingError
from storage.durable import replace_file

OPEN_FILES = 64  # descriptors kept open for reading, least recently used closed first


class SegmentFiles:
    """One member's view of the group's segment directories: `files(partition)` is the
    `Segments` of a partition's join, `committed()` is told of each checkpoint written."""

    def __init__(self, root: Path, member: str, keep: int):
        self.root = root
        self.member = member
        self.keep = keep
        self.written_bytes = 0  # by this member, for the checkpoint-size metric
        self._commits = 0
        self._retired: list[tuple[int, Path]] = []  # (commits when retired, file)
        self._open: OrderedDict[Path, tuple[int, int]] = OrderedDict()  # path -> (fd, size)

    def __call__(self, partition: int) -> PartitionSegments:
        return PartitionSegments(self, self.root / str(partition))

    def committed(self) -> None:
        """A checkpoint is durable: delete what was retired `keep` checkpoints ago."""
        self._commits += 1
        due = [path for commits, path in self._retired if commits <= self._commits - self.keep]
        self._retired = self._retired[len(due) :]
        for path in due:
            self._forget(path)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def close(self) -> None:
        for path in list(self._open):
            self._forget(path)

    def read(self, path: Path, offset: int, length: int) -> bytes:
        fd, size = self._descriptor(path)
        start = offset if offset >= 0 else size + offset
        data = os.pread(fd, length, start)
        if len(data) != length:
            raise SegmentMissingError(f"segment {path} is shorter than its index says")
        return data

    def retire(self, paths: list[Path]) -> None:
        self._retired += [(self._commits, path) for path in paths]

    def _descriptor(self, path: Path) -> tuple[int, int]:
        found = self._open.get(path)
        if found is not None:
            self._open.move_to_end(path)
            return found
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise SegmentMissingError(
                f"segment {path} is missing, though a checkpoint names it: was the "
                f"checkpoint directory {self.root.parent} moved, or cleaned by hand?"
            ) from None
        found = self._open[path] = (fd, os.fstat(fd).st_size)
        while len(self._open) > OPEN_FILES:
            self._forget(next(iter(self._open)))
        return found

    def _forget(self, path: Path) -> None:
        found = self._open.pop(path, None)
        if found is not None:
            os.close(found[0])


class PartitionSegments:
    """The `Segments` of one partition's join."""

    def __init__(self, files: SegmentFiles, directory: Path):
        self.files = files
        self.directory = directory

    def write(self, blob: bytes) -> str:
        name = f"{self.files.member}-{uuid.uuid4().hex[:16]}"
        self.directory.mkdir(parents=True, exist_ok=True)
        replace_file(self.directory / f"{name}.seg", blob)
        self.files.written_bytes += len(blob)
        return name

    def read(self, name: str, offset: int, length: int) -> bytes:
        return self.files.read(self.directory / f"{name}.seg", offset, length)

    def retire(self, names: list[str]) -> None:
        self.files.retire([self.directory / f"{name}.seg" for name in names])
