"""Decision logging off the request path: one shipper process per host owns the Kafka
producer, and the gunicorn workers hand it encoded events over a Unix socket.

kafka-python's per-message work (record batches, partitioning, CRCs, futures) used to run in
every worker, beside the requests and under their GIL. Now a worker only encodes an event
(msgspec, a few microseconds) and queues the bytes; a worker thread writes what is queued to
the shipper in one burst per BATCH_INTERVAL_S. The shipper checks each event against its
contract (`bandit.contracts.events.decode`) and sends it with `EventProducer`: the same bounded
buffer, drop accounting and outage behaviour as before, now counted in its own process
(the metrics of all processes are aggregated, see `serving.metrics`).

A worker holds what it could not hand over (the shipper restarting, or too slow) in a
queue of at most `log_buffer_events`, and drops, counted, what waits longer than
`log_outage_s` or does not fit. A frame the shipper did not receive whole is not taken, so
a broken connection never duplicates an event; one it received whole is its to deliver.
"""

from __future__ import annotations

import collections
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from prometheus_client import CollectorRegistry

from bandit.config import Config
from bandit.contracts import events
from kafkaio import memory
from serving.event_producer import (
    BATCH_INTERVAL_S,
    DROP_REASONS,
    RETRY_S,
    EventProducer,
    running_thread,
)
from serving.metrics import ServingMetrics

log = logging.getLogger(__name__)

# Each frame: lengths of topic, key and value, then the three as bytes.
_HEADER = struct.Struct("!HHI")
SEND_TIMEOUT_S = 2.0  # a shipper that takes nothing for this long is treated as gone
MAX_BURST_BYTES = 4 << 20  # a worker hands over at most this much per write


@dataclass(slots=True)
class _Frame:
    topic: str
    data: bytes
    since: float  # monotonic time the worker accepted it


def frame(topic: str, key: str, value: bytes) -> bytes:
    head, name = topic.encode(), key.encode()
    return _HEADER.pack(len(head), len(name), len(value)) + head + name + value


def unframe(buffer: bytearray) -> tuple[list[tuple[str, str, bytes]], int]:
    """The whole frames at the start of `buffer`, and how many bytes they take."""
    found, at = [], 0
    while len(buffer) - at >= _HEADER.size:
        topic_len, key_len, value_len = _HEADER.unpack_from(buffer, at)
        end = at + _HEADER.size + topic_len + key_len + value_len
        if end > len(buffer):
            break
        start = at + _HEADER.size
        topic = bytes(buffer[start : start + topic_len]).decode()
        key = bytes(buffer[start + topic_len : start + topic_len + key_len]).decode()
        found.append((topic, key, bytes(buffer[start + topic_len + key_len : end])))
        at = end
    return found, at


class ShipperClient:
    """A worker's side, with `EventProducer`'s interface: `send` never blocks a request."""

    def __init__(
        self,
        path: str,
        max_outstanding: int,
        outage_s: float,
        on_drop: Callable[[str, str], None] = lambda topic, reason: None,
    ):
        self.path = path
        self.max_outstanding = max_outstanding
        self.outage_s = outage_s
        self.on_drop = on_drop
        self._queue: collections.deque[_Frame] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._writing = 0  # frames taken off the queue by the thread, not yet handed over
        self._closed = False

    @property
    def outstanding(self) -> int:
        """Events this worker has not handed to the shipper yet."""
        return len(self._queue) + self._writing

    def send(self, topic: str, key: str, event: events.Event) -> bool:
        """Queue `event` for `topic`; False (and counted) when the queue is full."""
        if self._closed or self.outstanding >= self.max_outstanding:
            self.on_drop(topic, "buffer_full")
            return False
        data = frame(topic, key, events.encode_unchecked(event))
        self._queue.append(_Frame(topic, data, time.monotonic()))
        self._ensure_thread()
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued event is handed to the shipper or dropped."""
        deadline = time.monotonic() + timeout_s
        while self.outstanding and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.01)
        return self.outstanding == 0

    def close(self, timeout_s: float = 5.0) -> None:
        self.flush(timeout_s)
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        while self._queue:  # what the shipper never took
            self.on_drop(self._queue.popleft().topic, "shipper_unavailable")
        self._disconnect()

    def _ensure_thread(self) -> None:
        self._thread = running_thread(self._thread, self._lock, self._run, "shipper-client")

    def _run(self) -> None:
        while not self._closed:
            # One burst per interval: a thread woken per event would fight the requests
            # for the GIL.
            self._wake.wait(BATCH_INTERVAL_S)
            self._wake.clear()
            if self._queue and not self._hand_over():
                self._drop_stale()
                self._wake.wait(RETRY_S)

    def _hand_over(self) -> bool:
        """Write queued frames to the shipper; False when it cannot take them now."""
        while self._queue:
            burst, size = [], 0
            while self._queue and size < MAX_BURST_BYTES:
                burst.append(self._queue.popleft())
                size += len(burst[-1].data)
            self._writing = len(burst)
            try:
                written = self._write(b"".join(item.data for item in burst))
            finally:
                self._writing = 0
            handed = 0
            for item in burst:
                if written < len(item.data):
                    break
                written -= len(item.data)
                handed += 1
            if handed < len(burst):  # back to the front, in order; the partial one is resent
                self._queue.extendleft(reversed(burst[handed:]))
                return False
        return True

    def _write(self, data: bytes) -> int:
        """Bytes of `data` written before the connection failed (all of them if it did not)."""
        sock = self._connect()
        if sock is None:
            return 0
        view, sent = memoryview(data), 0
        try:
            while sent < len(data):
                sent += sock.send(view[sent:])
        except OSError as exc:
            log.warning("shipper at %s stopped taking events: %s", self.path, exc)
            self._disconnect()
        return sent

    def _connect(self) -> socket.socket | None:
        if self._socket is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(SEND_TIMEOUT_S)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                log.warning("shipper at %s unavailable: %s", self.path, exc)
                return None
            self._socket = sock
        return self._socket

    def _disconnect(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _drop_stale(self) -> None:
        now = time.monotonic()
        while self._queue and now - self._queue[0].since > self.outage_s:
            self.on_drop(self._queue.popleft().topic, "shipper_unavailable")


class Shipper:
    """The host's side: accepts workers on `path`, checks what they hand over and sends it
    to Kafka with `producer`, until `stop` and every worker has hung up (or `drain_s`)."""

    def __init__(
        self,
        path: str,
        producer: EventProducer,
        on_invalid: Callable[[str], None],
        on_taken: Callable[[], None] = lambda: None,
    ):
        """`on_taken` runs after each read that handed events to `producer`."""
        self.path = path
        self.producer = producer
        self.on_invalid = on_invalid
        self.on_taken = on_taken
        self._stopping = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(path):
            os.unlink(path)  # left by a shipper that was killed
        self._listener.bind(path)
        self._listener.listen(256)
        self._listener.setblocking(False)

    def stop(self) -> None:
        self._stopping.set()

    def run(self, tick: Callable[[], None] = lambda: None, drain_s: float = 10.0) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ, None)
        buffers: dict[socket.socket, bytearray] = {}
        stopped_at = None
        next_tick = 0.0
        while True:
            if self._stopping.is_set() and stopped_at is None:
                stopped_at = time.monotonic()
                selector.unregister(self._listener)
                self._listener.close()
            if stopped_at is not None and (not buffers or time.monotonic() - stopped_at > drain_s):
                break
            for key, _ in selector.select(timeout=0.2):
                if key.fileobj is self._listener:
                    self._accept(selector, buffers)
                else:
                    self._read(key.fileobj, selector, buffers)  # type: ignore[arg-type]
            if time.monotonic() >= next_tick:
                tick()
                next_tick = time.monotonic() + 0.5
        for sock in buffers:
            sock.close()
        selector.close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _accept(
        self, selector: selectors.BaseSelector, buffers: dict[socket.socket, bytearray]
    ) -> None:
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, None)
        buffers[sock] = bytearray()

    def _read(
        self,
        sock: socket.socket,
        selector: selectors.BaseSelector,
        buffers: dict[socket.socket, bytearray],
    ) -> None:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:  # the worker hung up; a partial frame it left is not taken
            selector.unregister(sock)
            sock.close()
            del buffers[sock]
            return
        buffer = buffers[sock]
        buffer += chunk
        found, used = unframe(buffer)
        del buffer[:used]
        for topic, key, value in found:
            try:
                events.decode(value)
            except events.EventError as exc:
                log.error("event refused by its own contract, not sent: %s", exc)
                self.on_invalid(topic)
                continue
            self.producer.send_encoded(topic, key, value)
        if found:
            self.on_taken()


def run_shipper(config: Config, path: str, parent: int) -> None:
    """The shipper process's main: ships until SIGTERM or until `parent` is gone, then
    drains its workers' connections and closes the producer (which flushes)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C: the master decides
    metrics = ServingMetrics(CollectorRegistry())
    topics = [config.kafka.topics.decisions, config.kafka.topics.feedback]
    metrics.start_at_zero([], topics, DROP_REASONS)
    producer = EventProducer.for_service(config, metrics)
    # The buffered gauge rises as events are taken, never later: a scrape that reads 0
    # means nothing taken is still waiting for Kafka (acknowledgements lower it each tick).
    shipper = Shipper(
        path,
        producer,
        lambda topic: metrics.events_dropped.labels(topic, "invalid").inc(),
        lambda: metrics.events_buffered.set(producer.outstanding),
    )
    signal.signal(signal.SIGTERM, lambda *_: shipper.stop())

    upkeep = memory.Upkeep()  # a broker stall's batches, freed, back to the system

    def tick() -> None:
        metrics.events_buffered.set(producer.outstanding)
        upkeep.due()
        if os.getppid() != parent:
            shipper.stop()

    try:
        shipper.run(tick)
    finally:
        producer.close(timeout_s=10)
        metrics.events_buffered.set(0)


def main(argv: list[str]) -> int:
    """`python -m serving.shipper PATH PARENT_PID`, the config as JSON on stdin."""
    memory.steady_allocator()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s shipper %(levelname)s %(name)s: %(message)s"
    )
    config = msgspec.json.decode(sys.stdin.buffer.read(), type=Config)
    run_shipper(config, argv[0], int(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
