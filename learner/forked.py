"""Running a burst of work in a forked child, so that its memory dies with the child.

A tuning switch reads and learns a window of 50,000 events: hundreds of megabytes of
objects for a few seconds. Freed inside the learner, that memory stays with it, pinned by
the few objects allocated meanwhile that outlive the burst (the hour-long soak saw the
learner step from 256 to 352 MB at its switches, and a step of about 50 MB remain after
`malloc_trim`). A fork shares the learner's state as it is, so the work may read the
join's open decisions without copying them; only its small result comes back, pickled.
"""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ChildDied(OSError):
    """The child ended without an answer (killed, out of memory): like a failed read, the
    caller may try again later."""


def run_forked(work: Callable[[], T]) -> T:
    """`work()` in a forked child: its result, or the exception it raised (re-raised here,
    as a RuntimeError naming it if it cannot be pickled). The parent blocks meanwhile, as it
    would running `work` itself; its signal handlers stay its own (the child ignores the
    stop signals and ends when its work does)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
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
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not answer:
        raise ChildDied(f"the forked child died without an answer ({_how(status)})")
    done, value = pickle.loads(answer)
    if not done:
        raise value
    result: T = value
    return result


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
