"""Giving the memory of a burst back to the system.

A Kafka client's bursts are large and short: a learner's tuning switch reads and decodes a
slot's last 50,000 rewarded events; a learner behind, or a shipper whose broker stalls,
holds fetch responses or produce batches of many megabytes. Freed, that memory goes back
to glibc's malloc, which keeps it inside its heap between live chunks, so a process's
resident size stays at its largest burst: the hour-long soak saw the learner step from 256
to 352 MB at its switches (the heap 169 MB, 79 of them free) and the shipper creep by 17%.
`malloc_trim(0)` returns those free pages (17 ms for a 180 MB fragmented heap, measured):
the learner and the shipper call `Upkeep.due` on their loops, and a service worker on its
policy reload round (its request threads share one arena, which a soak saw hold 35 MB
after a minute of queued requests). (The bursts that leave
objects behind, a switch's warm start and a tuning round, run in a forked child instead:
`kafkaio.forked`.)

Trimming cannot return a block that is still in use, and glibc's defaults put large blocks
where small ones pin them: each time a block above its mmap threshold is freed, glibc
raises the threshold to that block's size (up to 32 MB), so the next VW weight table,
Kafka fetch response or produce batch comes from the heap instead of a mapping of its own,
and it opens up to 8 arenas per core for threads, each keeping its own free memory. The
soak saw a service worker climb from 157 to 232 MB in its first minutes this way.
`steady_allocator`, called once as every process starts, fixes the threshold and keeps two
arenas; large blocks are then mapped and unmapped whole.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import time
import tracemalloc
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_EVERY_S = 60.0
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept from moving
ARENAS = 2  # the main thread's and one for all of Kafka's and gunicorn's threads
_M_MMAP_THRESHOLD = -3  # mallopt parameters, from glibc's malloc.h
_M_ARENA_MAX = -8


def _glibc(name: str, *argtypes: type) -> Callable[..., int] | None:
    """A glibc malloc function, or None where the C library has none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    function = getattr(libc, name, None)
    if function is None:
        return None
    function.argtypes = list(argtypes)
    function.restype = ctypes.c_int
    found: Callable[..., int] = function
    return found


_TRIM = _glibc("malloc_trim", ctypes.c_size_t)
_MALLOPT = _glibc("mallopt", ctypes.c_int, ctypes.c_int)


def steady_allocator() -> bool:
    """Fix glibc's mmap threshold and keep `ARENAS` arenas, unless the operator tuned malloc
    through the environment (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES),
    which is then left as set. False where there is nothing to set. Call it once, early: a
    forked child inherits it."""
    tuned = any(name.startswith("MALLOC_") for name in os.environ)
    if _MALLOPT is None or tuned or "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    return bool(_MALLOPT(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and _MALLOPT(_M_ARENA_MAX, ARENAS))


def release() -> bool:
    """Return the C heap's free pages to the system now; False where that is not possible
    (the memory is then reused by the process, as before)."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


TRACE_ENV = "ARTBANDIT_TRACEMALLOC"  # seconds between reports of where memory grew
TRACE_LINES = 10


class Upkeep:
    """A long-running loop's memory upkeep, for a loop that calls `due` often: `release`
    at most every `every_s` seconds, and with ARTBANDIT_TRACEMALLOC=SECONDS in the
    environment, a log of where the interpreter's memory grew (`Tracer`)."""

    def __init__(self, every_s: float = TRIM_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self._trim = _Every(every_s, clock)
        self.tracer = Tracer.from_environment(clock)

    def due(self) -> None:
        if self._trim():
            release()
        if self.tracer is not None:
            self.tracer.due()


class _Every:
    """True once every `every_s` seconds of `clock`, the first time `every_s` after now."""

    def __init__(self, every_s: float, clock: Callable[[], float]):
        self.every_s = every_s
        self.clock = clock
        self._next = clock() + every_s

    def __call__(self) -> bool:
        now = self.clock()
        if now < self._next:
            return False
        self._next = now + self.every_s
        return True


class Tracer:
    """Logs, every `every_s` seconds, the source lines whose live allocations grew most
    since the first look: what a process that grows over hours keeps, named by the line
    that allocated it. Tracing slows every allocation: for a diagnostic run, never on by
    default."""

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic):
        self._report = _Every(every_s, clock)
        tracemalloc.start()
        self._first = tracemalloc.take_snapshot()

    @classmethod
    def from_environment(cls, clock: Callable[[], float] = time.monotonic) -> Tracer | None:
        """A tracer when ARTBANDIT_TRACEMALLOC holds a positive number of seconds; a value
        that is not one is logged and ignored (a diagnostic never stops a process)."""
        value = os.environ.get(TRACE_ENV, "").strip()
        if not value:
            return None
        try:
            every_s = float(value)
        except ValueError:
            every_s = 0.0
        if not every_s > 0 or math.isinf(every_s):
            log.warning("%s=%r is not a number of seconds > 0; not tracing", TRACE_ENV, value)
            return None
        return cls(every_s, clock)

    def due(self) -> None:
        if not self._report():
            return
        snapshot = tracemalloc.take_snapshot()
        traced, peak = tracemalloc.get_traced_memory()
        lines = [
            f"  {diff.size_diff / 2**20:+8.2f} MB {diff.count_diff:+9,d} blocks  {diff.traceback}"
            for diff in snapshot.compare_to(self._first, "lineno")[:TRACE_LINES]
        ]
        log.warning("memory traced: %.1f MB (peak %.1f MB); grown most since the first look:\n%s",
                    traced / 2**20, peak / 2**20, "\n".join(lines))  # fmt: skip
