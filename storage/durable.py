"""Writing files so that a crash leaves the old content or the new, never a part of either.

Both helpers write a temp file beside the target, fsync it, put it in place with one atomic
call, and fsync the directory so the new name survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def replace_file(path: Path, data: bytes) -> None:
    """Write `path` whole, replacing any previous version (checkpoints, marker files)."""
    tmp = _write_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    fsync_directory(path.parent)


def create_file(path: Path, data: bytes) -> bool:
    """Write `path` whole unless it exists; False when another writer got there first
    (a hard link refuses an existing name, so two writers never overwrite each other)."""
    tmp = _write_temp(path, data)
    try:
        os.link(tmp, path)
        created = True
    except FileExistsError:
        created = False
    finally:
        os.unlink(tmp)
    fsync_directory(path.parent)
    return created


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:  # write() loops until every byte is written
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp
