"""Running a burst of Kafka reading and learning in a forked child, so that its memory
dies with the child.

A learner's tuning switch reads and learns a window of 50,000 events, a tuning round
several: hundreds of megabytes of objects for seconds or minutes. Freed inside a
long-running process, that memory stays with it, pinned by the few objects allocated
meanwhile that outlive the burst (the hour-long soak saw the learner step from 256 to 352
MB at its switches, about 50 MB of it still there after `malloc_trim`, and the tuner's idle
size grow round after round). A fork shares the parent's state as it is, so the work may
read it (a learner's open decisions) without copying it; only its small result comes back.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ChildDied(OSError):
    """The child ended without an answer (killed, out of memory): like a failed read, the
    caller may try again later."""


def run_forked(
    work: Callable[[], T], stop: threading.Event | None = None, background: bool = False
) -> T:
    """`work()` in a forked child: its result, or the exception it raised (re-raised here,
    as a RuntimeError naming it if it cannot be pickled). The parent waits meanwhile, as it
    would running `work` itself. The child dies of SIGTERM and SIGINT (a group's stop
    signal reaches it), and once `stop` is set the parent sends it SIGTERM: either way the
    parent gets ChildDied. `background`: the child runs only on CPU time nothing else
    wants (`idle_priority`), for work that must not slow the processes serving and
    learning beside it."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            if background:
                idle_priority()
            answer = pickle.dumps((True, work()))
        except BaseException as exc:  # everything goes back to the parent
            try:
                answer = pickle.dumps((False, exc))
            except Exception:
                answer = pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
        try:
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(answer)
        finally:
            os._exit(0)  # no atexit handlers, no flushing of the parent's buffers
    os.close(write_end)
    answer = _read_until_closed(read_end, pid, stop)
    _, status = os.waitpid(pid, 0)
    if not answer:
        raise ChildDied(f"the forked child died without an answer ({_how(status)})")
    done, value = pickle.loads(answer)
    if not done:
        raise value
    result: T = value
    return result


def idle_priority() -> None:
    """Run this process only on CPU time no other process wants: Linux's SCHED_IDLE, which
    a busy process beside it does not even wait a time slice for (a tuning round at
    nice 10 still doubled the service's p99 in the soak), or nice 19 where there is none;
    and the session's autogroup at 19 when its leader is the parent (`lower_autogroup`)."""
    if os.getsid(0) == os.getppid():
        lower_autogroup(19)
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
    os.nice(19)


def lower_priority(nice: int) -> None:
    """Raise every thread of this process to niceness `nice` (never lower it: that needs
    privileges), and its session's autogroup when it leads the session. Linux keeps a
    niceness per thread, and libraries start threads at import."""
    for task in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ["0"]:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            tid = int(task)
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
    if os.getsid(0) == os.getpid():
        lower_autogroup(nice)


def lower_autogroup(nice: int) -> None:
    """Raise this session's autogroup niceness to `nice`. With Linux's autogroup on (the
    default of most desktop and many server kernels), the CPU is shared between sessions
    first, and a thread's niceness weighs only against its own session's: a learner or a
    tuner started in a session of its own (a supervisor, `setsid`, each of the soak's
    processes) would compete with the service as an equal whatever its niceness. Only for
    a session this process or its parent leads, so no one else's is changed; nothing where
    there is no autogroup (a cgroup's CPU weight, e.g. systemd's CPUWeight=, rules there)."""
    path = "/proc/self/autogroup"
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open(path) as fh:  # "/autogroup-873 nice 0"
            current = int(fh.read().split()[-1])
        if current < nice:
            with open(path, "w") as fh:
                fh.write(str(nice))


def _read_until_closed(fd: int, pid: int, stop: threading.Event | None) -> bytes:
    """Everything the child writes, until it closes the pipe (or dies); the child is sent
    SIGTERM once `stop` is set."""
    chunks: list[bytes] = []
    stopped = False
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
            elif stop is not None and stop.is_set() and not stopped:
                stopped = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
    finally:
        os.close(fd)


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
