"""The service's private temporary directories (the workers' metric files, the shipper's
socket), named by the master's pid so that a start can sweep those a killed master left
behind: `kill -9` (or an OOM kill) skips every cleanup, and each start would otherwise
leave one more pair in the temp directory."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

log = logging.getLogger(__name__)

METRICS = "artbandit-metrics-"
SHIPPER = "artbandit-shipper-"


def make(kind: str, root: str | None = None) -> str:
    """A new directory of `kind` (`METRICS`, `SHIPPER`) for this process, after sweeping
    the directories of that kind whose process is gone."""
    sweep(kind, root)
    return tempfile.mkdtemp(prefix=f"{kind}{os.getpid()}-", dir=root)


def sweep(kind: str, root: str | None = None) -> list[str]:
    """Remove the directories of `kind` in `root` (the temp directory) that this user owns
    and whose process is gone; returns their paths. Another user's, a symlink, a live
    process's and a name without a pid are left alone."""
    root = root if root is not None else tempfile.gettempdir()
    removed: list[str] = []
    try:
        entries = list(os.scandir(root))
    except OSError as exc:
        log.warning("cannot list %s to sweep old %s* directories: %s", root, kind, exc)
        return removed
    for entry in entries:
        if not entry.name.startswith(kind):
            continue
        pid = entry.name.removeprefix(kind).partition("-")[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            if (
                not entry.is_dir(follow_symlinks=False)
                or entry.stat(follow_symlinks=False).st_uid != os.getuid()
            ):
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    if removed:
        log.info("removed %d %s* directories of services that were killed", len(removed), kind)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return pid > 0
