"""The host's shipper as a child of `artbandit serve`'s master: started before the workers,
restarted if it dies, stopped (drained and flushed) after the workers have gone.

A plain subprocess, not multiprocessing: gunicorn forks its workers from the master, and
multiprocessing's exit hooks in a forked worker would signal and join a child not theirs.
It runs in its own process group, so a signal sent to the service's group (systemd's
default KillMode, a terminal's Ctrl-C) stops the workers first and the shipper after them,
and not both at once. Once the master is told to stop (`shutting_down`), a shipper that
exits is never started again: gunicorn reaps every child of the master, the shipper too,
so its exit during a shutdown must not look like a crash.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from types import TracebackType

import msgspec

from bandit.config import Config
from kafkaio.embedded_broker import die_with_parent

log = logging.getLogger(__name__)

READY_S = 30.0
STOP_S = 20.0  # the shipper drains its workers (10 s at most) and flushes (10 s at most)


class ShipperProcess:
    def __init__(self, config: Config, path: str):
        self.config = config
        self.path = path
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()  # set by the stop, or by the master's signal handler
        self._lock = threading.Lock()  # a restart and the stop never interleave
        self._watchdog = threading.Thread(target=self._watch, name="shipper-watchdog", daemon=True)
        self.restarts = 0
        self._owner = os.getpid()

    @property
    def pid(self) -> int | None:
        """The running shipper's process id (a new one after each restart)."""
        return None if self._process is None else self._process.pid

    def shutting_down(self) -> None:
        """The service is stopping: from now on the shipper is stopped, never restarted.
        Safe to call from a signal handler (as `artbandit learn` sets its stop event)."""
        self._stopping.set()

    def __enter__(self) -> ShipperProcess:
        self._owner = os.getpid()
        self._start()
        self._watchdog.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if os.getpid() != self._owner:
            return  # a gunicorn worker, forked in the `with`, unwinding it as it exits
        self._stopping.set()
        with self._lock:
            if self._process is not None:
                self._stop(self._process)
        self._watchdog.join(5)

    @staticmethod
    def _stop(process: subprocess.Popen[bytes]) -> None:
        process.terminate()
        try:
            process.wait(STOP_S)
        except subprocess.TimeoutExpired:
            log.error("the shipper did not stop within %.0f s; killed", STOP_S)
            process.kill()
            process.wait()
        _mark_dead(process.pid)

    def _start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "serving.shipper", self.path, str(os.getpid())],
            stdin=subprocess.PIPE,
            preexec_fn=die_with_parent,
            process_group=0,
        )
        assert self._process.stdin is not None
        self._process.stdin.write(msgspec.json.encode(self.config))
        self._process.stdin.close()
        deadline = time.monotonic() + READY_S
        while not os.path.exists(self.path) and not self._stopping.is_set():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log.error("the shipper did not start; workers hold events until it does")
                return
            time.sleep(0.02)

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            assert self._process is not None
            if self._process.poll() is None:
                continue
            with self._lock:
                if self._stopping.is_set():
                    return
                log.error(
                    "the shipper exited with code %s; starting it again", self._process.returncode
                )
                _mark_dead(self._process.pid)
                self.restarts += 1
                self._start()


def _mark_dead(pid: int) -> None:
    """Its live gauges (events buffered) leave the aggregate, as a dead worker's do."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
