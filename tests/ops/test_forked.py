"""A burst of work in a forked child: its answer or its exception comes back, its memory
does not stay behind, and a child that dies is an error the switch retries."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kafka.errors import KafkaTimeoutError

from kafkaio.forked import ChildDied, run_forked

REPO = Path(__file__).resolve().parents[2]


def rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20


def test_the_answer_comes_back_and_the_burst_stays_in_the_child():
    before = rss_mb()
    kept = {"state": b"x" * 1000}  # the parent's objects, read as they are

    def burst() -> tuple[int, bytes]:
        window = [bytes(1500 + i % 700) for i in range(200_000)]  # about 350 MB
        return len(window), kept["state"][:3]

    assert run_forked(burst) == (200_000, b"xxx")
    assert rss_mb() - before < 20


@pytest.mark.parametrize("error", [ValueError("refused"), KafkaTimeoutError("no broker")])
def test_the_childs_exception_is_raised_in_the_parent(error):
    def fail():
        raise error

    with pytest.raises(type(error), match=str(error.args[0])):
        run_forked(fail)


def test_an_exception_that_cannot_be_pickled_is_named():
    class Local(Exception):  # a local class does not pickle
        pass

    def fail():
        raise Local("odd")

    with pytest.raises(RuntimeError, match="Local: odd"):
        run_forked(fail)


def test_a_child_that_dies_is_an_error_to_retry():
    with pytest.raises(ChildDied, match="SIGKILL") as caught:
        run_forked(lambda: os.kill(os.getpid(), signal.SIGKILL))
    assert isinstance(caught.value, OSError)  # what the switch retries later


def test_a_stop_ends_the_child_at_once():
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(ChildDied, match="SIGTERM"):
        run_forked(lambda: time.sleep(60), stop)
    assert time.monotonic() - started < 5


def test_background_work_runs_on_idle_cpu_time_and_the_parent_keeps_its_own():
    own = os.sched_getscheduler(0)
    assert run_forked(lambda: os.sched_getscheduler(0), background=True) == os.SCHED_IDLE
    assert run_forked(lambda: os.sched_getscheduler(0)) == own == os.SCHED_OTHER


def test_a_lower_priority_reaches_every_thread_and_never_raises_one():
    script = """
import os, threading
from kafkaio.forked import lower_priority
parked = threading.Event()
thread = threading.Thread(target=parked.wait)
thread.start()
lower_priority(7)
first = {os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir("/proc/self/task")}
os.nice(5)
lower_priority(3)
print(sorted(first), os.getpriority(os.PRIO_PROCESS, 0), len(os.listdir("/proc/self/task")))
parked.set()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[7]", "12", "2"]


SPIN = """
import os, sys, time
from kafkaio.forked import lower_priority
os.sched_setaffinity(0, {0})  # both spinners on one CPU: they must share it
if sys.argv[1] == "low":
    lower_priority(10)
print(open("/proc/self/autogroup").read().split()[-1], flush=True)
end = time.monotonic() + 2.0
while time.monotonic() < end:
    pass
print(time.process_time(), flush=True)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="no autogroup here")
def test_a_lowered_session_yields_the_cpu_to_another_session():
    """With autogroup, sessions share the CPU first: a niceness alone would weigh nothing
    against another session's process; the session's own autogroup niceness does."""
    command = [sys.executable, "-c", SPIN]
    spinners = {
        role: subprocess.Popen(
            [*command, role], cwd=REPO, text=True, stdout=subprocess.PIPE, start_new_session=True
        )
        for role in ("low", "equal")
    }
    out = {role: p.communicate(timeout=60)[0].split() for role, p in spinners.items()}
    assert out["low"][0] == "10" and out["equal"][0] == "0"  # each session's autogroup
    low, equal = float(out["low"][1]), float(out["equal"][1])
    assert low < 0.35 * (low + equal), (low, equal)
