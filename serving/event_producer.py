"""Events to Kafka without ever blocking a request.

`send` only enqueues. A background thread encodes (strictly, see `bandit.contracts.events.encode`)
and hands events to kafka-python. At most `max_outstanding` events are queued or in flight
(not yet acknowledged); beyond that, and for events Kafka finally refuses or that wait longer
than `outage_s` for it, events are dropped and counted. When the broker is down, requests
keep being served and the buffer fills: events Kafka cannot take yet (no connection, no
metadata) are held and tried again, and when it is back, the buffer drains.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kafka import KafkaProducer
from kafka.errors import (
    ClusterAuthorizationFailedError,
    InvalidRecordError,
    InvalidTopicError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
)

from bandit.config import Config, resolve_bootstrap
from bandit.contracts import events
from bandit.contracts.kafka import KafkaConfig
from kafkaio import clients

if TYPE_CHECKING:  # imported for types only: prometheus_client must load after the fork setup
    from serving.metrics import ServingMetrics

log = logging.getLogger(__name__)

_STOP = object()
BATCH_INTERVAL_S = 0.01
RETRY_S = 0.5  # while Kafka is away, how often held events are tried again
# Errors no retry can mend: the event is dropped (and counted) at once.
_REFUSED_FOR_GOOD = (
    MessageSizeTooLargeError,
    InvalidTopicError,
    InvalidRecordError,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)


@dataclass(slots=True)
class _Item:
    topic: str
    key: str
    event: events.Event | None  # None when it came encoded
    since: float  # monotonic time it was accepted
    value: bytes | None = None  # encoded, once


# Why an event was not delivered (the `reason` label of artbandit_events_dropped_total).
# shipper_unavailable: a gunicorn worker could not hand it to the host's shipper in time;
# invalid: it broke its own contract (a bug, logged).
DROP_REASONS = (
    "buffer_full",
    "broker_unavailable",
    "send_failed",
    "shipper_unavailable",
    "invalid",
)


class EventProducer:
    def __init__(
        self,
        kafka: KafkaConfig,
        bootstrap_servers: str,
        client_id: str,
        max_outstanding: int,
        outage_s: float = 120.0,
        on_drop: Callable[[str, str], None] = lambda topic, reason: None,
        on_sent: Callable[[str], None] = lambda topic: None,
    ):
        self.kafka = kafka
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.max_outstanding = max_outstanding
        self.outage_s = outage_s
        self.on_drop = on_drop
        self.on_sent = on_sent
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._outstanding = 0
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @classmethod
    def for_service(cls, config: Config, metrics: ServingMetrics) -> EventProducer:
        """The service's producer (a worker's own, or the host shipper's), counted in
        `metrics`."""
        return cls(
            config.kafka,
            resolve_bootstrap(config),
            config.kafka.client_id,
            config.serving.log_buffer_events,
            config.serving.log_outage_s,
            on_drop=lambda topic, reason: metrics.events_dropped.labels(topic, reason).inc(),
            on_sent=lambda topic: metrics.events_sent.labels(topic).inc(),
        )

    @property
    def outstanding(self) -> int:
        """Events queued or in flight, not yet acknowledged by Kafka."""
        return self._outstanding

    def send(self, topic: str, key: str, event: events.Event) -> bool:
        """Enqueue `event` for `topic`; False (and counted) when the buffer is full."""
        return self._accept(_Item(topic, key, event, time.monotonic()))

    def send_encoded(self, topic: str, key: str, value: bytes) -> bool:
        """`send` for an event already encoded and checked against its contract."""
        return self._accept(_Item(topic, key, None, time.monotonic(), value))

    def _accept(self, item: _Item) -> bool:
        topic = item.topic
        with self._lock:
            if self._closed or self._outstanding >= self.max_outstanding:
                full = True
            else:
                full = False
                self._outstanding += 1
        if full:
            self.on_drop(topic, "buffer_full")
            return False
        self._ensure_thread()
        self._queue.put(item)
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every accepted event is acknowledged or dropped."""
        deadline = time.monotonic() + timeout_s
        while self._outstanding and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._outstanding == 0

    def close(self, timeout_s: float = 5.0) -> None:
        self.flush(timeout_s)
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout_s)
        if self._producer is not None:
            try:
                self._producer.close(timeout=timeout_s)
            except KafkaError as exc:  # the broker is gone; what was unsent is already counted
                log.warning("Kafka producer did not close cleanly: %s", exc)

    def _ensure_thread(self) -> None:
        self._thread = running_thread(self._thread, self._lock, self._run, "event-producer")

    def _run(self) -> None:
        held: list[_Item] = []  # waiting for Kafka to be reachable, oldest first
        while True:
            try:
                incoming = [self._queue.get(timeout=RETRY_S if held else None)]
            except queue.Empty:
                incoming = []
            else:
                # Wake at most every BATCH_INTERVAL_S and send all that waits in one burst: a
                # thread woken per event would fight the request thread for the GIL.
                time.sleep(BATCH_INTERVAL_S)
                while True:
                    try:
                        incoming.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            stop = _STOP in incoming
            held = self._ship_all(held + [item for item in incoming if item is not _STOP])
            if stop:
                for item in held:
                    self._done(item.topic, ok=False, reason="broker_unavailable")
                return

    def _ship_all(self, items: list[_Item]) -> list[_Item]:
        """Hand `items` to Kafka in order; returns those to hold because Kafka cannot take
        them yet (no connection, no metadata), dropping those held longer than `outage_s`."""
        for n, item in enumerate(items):
            if self._ship(item):
                continue
            now = time.monotonic()
            for late in (i for i in items[n:] if now - i.since > self.outage_s):
                self._done(late.topic, ok=False, reason="broker_unavailable")
            return [i for i in items[n:] if now - i.since <= self.outage_s]
        return []

    def _ship(self, item: _Item) -> bool:
        """False when Kafka cannot take it now; True when it is sent, or dropped for good."""
        if item.value is None:
            assert item.event is not None
            try:
                item.value = events.encode(item.event)
            except events.EventError as exc:
                log.error("event refused by its own contract, not sent: %s", exc)
                self._done(item.topic, ok=False, reason="invalid")
                return True
        producer = self._connect()
        if producer is None:
            return False
        try:
            future = producer.send(item.topic, key=item.key.encode(), value=item.value)
        except KafkaTimeoutError:  # no metadata within max_block_ms: the broker is away
            return False
        except KafkaError as exc:
            log.warning("could not send to %s: %s", item.topic, exc)
            self._done(item.topic, ok=False, reason="send_failed")
            return True
        future.add_callback(lambda _: self._done(item.topic, ok=True))
        future.add_errback(lambda exc: self._failed(item, exc))
        return True

    def _failed(self, item: _Item, exc: Exception) -> None:
        """Kafka took the event but did not store it: try again while the outage allows
        (a broker coming back may answer oddly for a moment), unless it never will."""
        fresh = time.monotonic() - item.since <= self.outage_s
        if fresh and not self._closed and not isinstance(exc, _REFUSED_FOR_GOOD):
            self._queue.put(item)
            return
        log.warning("could not send to %s: %s", item.topic, exc)
        self._done(item.topic, ok=False, reason="send_failed")

    def _connect(self) -> KafkaProducer | None:
        if self._producer is None:
            try:
                self._producer = clients.producer(
                    self.kafka, "event_producer", self.bootstrap_servers,
                    client_id=self.client_id,
                    # Kept (and retried) this long through an outage, then dropped.
                    delivery_timeout_ms=int(self.outage_s * 1000),
                )  # fmt: skip
            except KafkaError as exc:
                log.warning("Kafka at %s unavailable: %s", self.bootstrap_servers, exc)
                time.sleep(1.0)  # don't spin while the broker is away
                return None
        return self._producer

    def _done(self, topic: str, ok: bool, reason: str = "") -> None:
        with self._lock:
            self._outstanding -= 1
        if ok:
            self.on_sent(topic)
        else:
            self.on_drop(topic, reason)


def running_thread(
    thread: threading.Thread | None, lock: threading.Lock, target: Callable[[], None], name: str
) -> threading.Thread:
    """`thread` if it runs, else a new daemon thread of `target`, started. Threads are
    started lazily because a gunicorn fork does not carry them over: each worker gets its own."""
    if thread is not None and thread.is_alive():
        return thread
    with lock:
        if thread is None or not thread.is_alive():
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
        return thread
