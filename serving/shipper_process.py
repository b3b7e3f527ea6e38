"""The host's shipper as a child of `artbandit serve`'s master: started before the workers,
restarted if it dies, stopped (drained and flushed) after the workers have gone.

A plain subprocess, not multiprocessing: gunicorn forks its workers from the master, and
multiprocessing's exit hooks in a forked worker would signal and join a child not theirs.
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
        self._stopping = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="shipper-watchdog", daemon=True)
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The running shipper's process id (a new one after each restart)."""
        return None if self._process is None else self._process.pid

    def __enter__(self) -> ShipperProcess:
        self._start()
        self._watchdog.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._watchdog.join(5)
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(STOP_S)
            except subprocess.TimeoutExpired:
                log.error("the shipper did not stop within %.0f s; killed", STOP_S)
                self._process.kill()
                self._process.wait()
            _mark_dead(self._process.pid)

    def _start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "serving.shipper", self.path, str(os.getpid())],
            stdin=subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        assert self._process.stdin is not None
        self._process.stdin.write(msgspec.json.encode(self.config))
        self._process.stdin.close()
        deadline = time.monotonic() + READY_S
        while not os.path.exists(self.path):
            if self._process.poll() is not None or time.monotonic() > deadline:
                log.error("the shipper did not start; workers hold events until it does")
                return
            time.sleep(0.02)

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            assert self._process is not None
            code = self._process.poll()
            if code is not None and not self._stopping.is_set():
                log.error("the shipper exited with code %s; starting it again", code)
                _mark_dead(self._process.pid)
                self.restarts += 1
                self._start()


def _mark_dead(pid: int) -> None:
    """Its live gauges (events buffered) leave the aggregate, as a dead worker's do."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
