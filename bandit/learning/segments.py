"""Where the join keeps the decisions it is not working on: immutable segments.

A join holds in memory only what it needs to join (each open decision's id, where its
newest copy lies, its closing time) and the decisions that changed since the last
checkpoint. A checkpoint writes those as one new segment, never rewriting an old one, so it
costs what changed; a segment is dropped once every decision in it is forgotten. A restore
reads only the segments' indexes, never their decisions, which are read back one at a time
when feedback arrives for them or their windows close.

A segment is one blob: the entries' bytes, then their index (msgpack), then the index's
length in 8 bytes. `Segments` stores blobs by name: `learner.checkpoint_store` on disk (one
directory per partition, shared by the group), `MemorySegments` here for tests and tools.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

import msgspec

_TRAILER = 8  # the index's length, big-endian


class Kind(IntEnum):
    """What an entry of a segment says about its decision id."""

    OPEN = 0  # the decision with its feedback so far; its time is when its window closes
    CLOSED = 1  # closed before it was ever written; its time is when it is forgotten
    IGNORED = 2  # a decision of a slot learned elsewhere; its time is when it is forgotten


class SegmentIndex(msgspec.Struct, array_like=True):
    """Column-wise, one row per entry, in the order they were written (a later row for the
    same id is newer)."""

    ids: list[str]
    kinds: list[int]
    times: list[float]
    offsets: list[int]
    lengths: list[int]


class Segments(Protocol):
    """Named blobs, written once; each partition's join has its own."""

    def write(self, blob: bytes) -> str:
        """Store `blob` durably under a new name, returned."""
        ...

    def read(self, name: str, offset: int, length: int) -> bytes:
        """`length` bytes of segment `name` from `offset` (negative: from the end)."""
        ...

    def retire(self, names: list[str]) -> None:
        """The newest state no longer needs these: drop them once no kept checkpoint does."""
        ...


class SegmentMissingError(RuntimeError):
    """A checkpoint names a segment that is not there (deleted by hand, or another disk)."""


class MemorySegments:
    """Segments in a dict: for tests, tools and a learner that never restarts."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.written = 0

    def write(self, blob: bytes) -> str:
        self.written += 1
        name = f"segment-{self.written}"
        self.blobs[name] = blob
        return name

    def read(self, name: str, offset: int, length: int) -> bytes:
        blob = self.blobs.get(name)
        if blob is None:
            raise SegmentMissingError(f"segment {name} is missing")
        start = offset if offset >= 0 else len(blob) + offset
        return blob[start : start + length]

    def retire(self, names: list[str]) -> None:
        for name in names:
            self.blobs.pop(name, None)


def encode_segment(entries: list[tuple[str, Kind, float, bytes]]) -> tuple[bytes, list[int]]:
    """The segment of `entries` (id, kind, time, body), and each entry's offset in it."""
    offsets: list[int] = []
    position = 0
    for _, _, _, body in entries:
        offsets.append(position)
        position += len(body)
    index = msgspec.msgpack.encode(
        SegmentIndex(
            ids=[e[0] for e in entries],
            kinds=[int(e[1]) for e in entries],
            times=[e[2] for e in entries],
            offsets=offsets,
            lengths=[len(e[3]) for e in entries],
        )
    )
    blob = b"".join([*(e[3] for e in entries), index, len(index).to_bytes(_TRAILER, "big")])
    return blob, offsets


def read_index(segments: Segments, name: str) -> SegmentIndex:
    """The index of segment `name`: its tail, without reading its entries."""
    length = int.from_bytes(segments.read(name, -_TRAILER, _TRAILER), "big")
    tail = segments.read(name, -_TRAILER - length, length)
    return msgspec.msgpack.decode(tail, type=SegmentIndex)
