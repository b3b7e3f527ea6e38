"""`artbandit serve`: the Flask app under gunicorn, with metrics shared by all workers."""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.sync import SyncWorker

from bandit.config import Config
from serving import run_dirs
from serving.shipper_process import ShipperProcess

if TYPE_CHECKING:
    from flask import Flask


class DecisionService(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped
    """Each worker builds its own app after the fork (VW workspaces, Kafka producer, threads)."""

    def __init__(
        self,
        config: Config,
        config_loader: Callable[[], Config],
        shipper_path: str | None,
        on_stop: Callable[[], None],
        early: EarlyStop,
    ):
        """`on_stop` runs in the master's signal handler when a stop signal arrives; a stop
        that `early` noted before gunicorn took the signals over is acted on as it starts."""
        self.config = config
        self.config_loader = config_loader
        self.shipper_path = shipper_path
        self.on_stop = on_stop
        self.early = early
        super().__init__()

    def run(self) -> None:
        try:
            _Arbiter(self, self.on_stop, self.early).run()
        except RuntimeError as exc:  # as BaseApplication.run: a bad setting, said plainly
            print(f"\nError: {exc}\n", file=sys.stderr)
            sys.exit(1)

    def load_config(self) -> None:
        # Imported here, in the master after PROMETHEUS_MULTIPROC_DIR is set, never lazily in
        # child_exit: two workers exiting at once would re-enter a half-done import.
        from prometheus_client import multiprocess

        serving = self.config.serving
        self.cfg.set("bind", f"{serving.host}:{serving.port}")
        self.cfg.set("workers", serving.workers)
        self.cfg.set("worker_class", "serving.gunicorn_app.Worker")
        self.cfg.set("timeout", 30)
        self.cfg.set("graceful_timeout", 10)
        # gunicornc is not used; its default socket path is one per user, so two services on
        # a host would take it from each other.
        self.cfg.set("control_socket_disable", True)
        # gunicorn answers requests it cannot parse (a bad request line, headers too large,
        # bad chunked encoding before the app reads it) with its own HTML page; this process
        # serves a JSON API, so those answers take the service's JSON error shape too.
        gunicorn_util.write_error = write_json_error
        self.cfg.set(
            "child_exit",
            lambda server, worker: multiprocess.mark_process_dead(worker.pid),  # type: ignore[no-untyped-call]
        )
        self.cfg.set("worker_exit", _worker_exit)

    def load(self) -> Flask:
        from serving.app import create_app  # after PROMETHEUS_MULTIPROC_DIR is set

        # The Kafka threads of a worker work in bursts; a request arriving meanwhile should
        # get the GIL within 0.5 ms, not the default 5 ms, or the burst shows up in p99.
        sys.setswitchinterval(0.0005)
        app = create_app(
            self.config, config_loader=self.config_loader, shipper_path=self.shipper_path
        )
        # A full page allocates thousands of short-lived objects; with the default gen-0
        # threshold (700) the collector runs several times per request and its older
        # generations scan the whole heap. Startup objects are frozen out of those scans.
        gc.freeze()
        gc.set_threshold(50_000, 20, 50)
        return app


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


class EarlyStop:
    """The master's handler of the stop signals until gunicorn takes them over: it notes
    the first, and the arbiter acts on it once it handles signals itself. Raising from the
    handler would stop at once, but Python runs a handler wherever the main thread is, and
    an exception raised in an at-fork hook or a finalizer is printed and swallowed: seen in
    CI, a SIGTERM that arrived while the shipper was being forked was lost that way, and the
    master went on to serve."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self)


class Worker(SyncWorker):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's sync worker, whose quick stop (SIGINT, SIGQUIT: Ctrl-C, or the master's
    quick shutdown) still ends the request in hand and hands its events to the shipper.
    The stock one raised SystemExit mid-request: a traceback, and a client never answered
    for a decision that may have been logged. The master still kills a worker that has not
    gone within 2 s of a quick stop (graceful_timeout for SIGTERM)."""

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        self.alive = False


class _Arbiter(Arbiter):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's master, saying the moment a stop signal arrives (it then stops the workers,
    which takes up to graceful_timeout): the shipper must not be restarted meanwhile, and
    no worker is forked from then on (a fork under way when it lands completes, and that
    worker stops with the others). gunicorn handles a signal only between its own steps,
    so a stop that arrives while it spawns its first workers (it sleeps up to 0.1 s between
    forks) would otherwise fork the rest, only to stop them at once."""

    def __init__(self, app: DecisionService, on_stop: Callable[[], None], early: EarlyStop):
        self.on_stop = on_stop
        self.early = early
        self.stopping = False
        super().__init__(app)

    def init_signals(self) -> None:
        super().init_signals()
        if self.early.signum is not None:  # arrived before gunicorn's handlers were in place
            self.signal(self.early.signum, None)

    def signal(self, sig: int, frame: FrameType | None) -> None:
        if sig in STOP_SIGNALS:
            self.stopping = True
            self.on_stop()
        super().signal(sig, frame)

    def spawn_worker(self) -> int | None:
        if self.stopping:
            return None
        pid: int = super().spawn_worker()
        return pid


def write_json_error(sock: socket.socket, status_int: int, reason: str, message: str) -> None:
    """gunicorn's `util.write_error`, answering in the service's JSON error shape."""
    code = "".join(c if c.isalnum() else "_" for c in reason.lower()).strip("_") or "http"
    error = {"error": {"field": "(request)", "message": message[:200], "reason": code}}
    body = json.dumps(error).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    gunicorn_util.write_nonblock(sock, head.encode("latin1") + body)


def _worker_exit(server: Any, worker: Any) -> None:
    app = getattr(worker, "wsgi", None)
    state = getattr(app, "extensions", {}).get("artbandit") if app is not None else None
    if state is not None:
        state.producer.close(timeout_s=5)


def serve(config: Config, config_loader: Callable[[], Config]) -> int:
    """Run until SIGINT/SIGTERM, then exit 0. Metrics of all workers are aggregated in a
    private directory; the workers log events through the host's shipper process
    (`serving.shipper`), which is stopped after them."""
    early = EarlyStop()  # until gunicorn takes the signals: a stop while starting is clean
    early.install()
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = run_dirs.make(run_dirs.METRICS)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    socket_dir = run_dirs.make(run_dirs.SHIPPER)
    master = os.getpid()
    try:
        if early.signum is not None:
            return 0
        with ShipperProcess(config, os.path.join(socket_dir, "events.sock")) as shipper:
            DecisionService(config, config_loader, shipper.path, shipper.shutting_down, early).run()
    finally:
        # gunicorn's workers are forked inside `run` and exit by raising SystemExit through
        # these frames: only the master owns the directories (and the shipper, see there).
        if os.getpid() == master:
            shutil.rmtree(socket_dir, ignore_errors=True)
            if own_dir:
                shutil.rmtree(own_dir, ignore_errors=True)
    return 0
