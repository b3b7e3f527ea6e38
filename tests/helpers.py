"""Real parts for tests: a running decision service on loopback, an HTTP client, a Kafka reader."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from kafka import KafkaConsumer, TopicPartition
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from bandit.config import Config
from bandit.contracts import events
from learner.loop import KafkaLearner
from serving.app import create_app
from serving.client import Client
from serving.state import ServiceState, service_state


class _KeepAliveHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_request(self, *args, **kwargs) -> None:
        pass


@dataclass
class RunningService:
    app: Flask
    server: BaseWSGIServer
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def state(self) -> ServiceState:
        return service_state(self.app)

    def client(self) -> Client:
        return Client(self.host, self.port)


@contextlib.contextmanager
def running_service(config: Config, **create_kwargs: Any) -> Iterator[RunningService]:
    """The app on a free port of 127.0.0.1 in a thread; stopped (and its producer flushed) after."""
    app = create_app(config, **create_kwargs)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_KeepAliveHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RunningService(app, server, "127.0.0.1", server.server_port)
    finally:
        server.shutdown()
        thread.join(10)
        state = service_state(app)
        state.registry.stop()
        state.model_feed.stop()
        state.producer.close(timeout_s=5)


def read_topic(
    bootstrap: str, topic: str, count: int, timeout_s: float = 20.0
) -> list[events.Event]:
    """The first `count` events of `topic` (decoded), or fewer if the deadline passes."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=1000
    )
    received: list[events.Event] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(received) < count and time.monotonic() < deadline:
            for message in consumer:
                received.append(events.decode(message.value))
                if len(received) >= count:
                    break
    finally:
        consumer.close()
    return received


def wait_for(
    condition: Callable[[], Any], timeout_s: float = 20.0, interval_s: float = 0.05
) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)


def metric_value(exposition: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 if none)."""
    total = 0.0
    for line in exposition.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        sample, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in sample for k, v in labels.items()):
            total += float(value)
    return total


@contextlib.contextmanager
def running_learner(config: Config, **kwargs: Any) -> Iterator[KafkaLearner]:
    """A learner in a thread until the block ends; then it checkpoints and leaves the group."""
    learner = KafkaLearner(config, config.kafka.bootstrap_servers, **kwargs)
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            learner.run(stop)
        except BaseException as exc:  # surfaced in the test thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name="learner", daemon=True)
    thread.start()
    try:
        wait_for(lambda: learner.ready.is_set() or failure, timeout_s=30)
        yield learner
    finally:
        stop.set()
        thread.join(60)
    if failure:
        raise failure[0]


def read_all(
    bootstrap: str, topic: str, idle_s: float = 2.0, timeout_s: float = 120.0
) -> list[bytes]:
    """Every message value of `topic`: read at least to the end offsets every partition had
    when reading began, then until nothing new arrives for `idle_s` (a slow fetch on a busy
    machine must not end the read early)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        started = time.monotonic()
        partitions = consumer.partitions_for_topic(topic)
        while partitions is None and time.monotonic() - started < idle_s:
            time.sleep(0.1)  # not created yet, or its metadata not known yet
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return []
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        values: list[bytes] = []
        last_new = time.monotonic()
        while time.monotonic() - started < timeout_s:
            batch = consumer.poll(timeout_ms=200)
            for messages in batch.values():
                values += [message.value for message in messages]
                last_new = time.monotonic() if messages else last_new
            at_end = all(consumer.position(tp) >= ends[tp] for tp in assigned)
            if at_end and time.monotonic() - last_new >= idle_s:
                break
        return values
    finally:
        consumer.close()


def children_of(parent: int) -> dict[int, bytes]:
    """The live child processes of `parent`: pid -> command line (NUL-separated)."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent:
                found[int(entry.name)] = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
    return found


def shippers_of(parent: int) -> list[int]:
    """Pids of the shipper processes `parent` runs."""
    return [pid for pid, cmdline in children_of(parent).items() if b"serving.shipper" in cmdline]


def start_serve(*settings: str) -> subprocess.Popen[str]:
    """`artbandit serve --set S ...` in a process group of its own, as under a shell or
    systemd, with no configuration from this environment; its stderr is kept."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("ARTBANDIT_CONFIG", "PROMETHEUS_MULTIPROC_DIR")}  # fmt: skip
    artbandit = str(Path(sys.executable).with_name("artbandit"))
    return subprocess.Popen(
        [artbandit, "serve", *(a for setting in settings for a in ("--set", setting))],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
