"""Events to Kafka without ever blocking a request.

`send` only enqueues. A background thread encodes (strictly, see `bandit.events.encode`)
and hands events to kafka-python. At most `max_outstanding` events are queued or in flight
(not yet acknowledged); beyond that, and for events Kafka finally refuses or that wait longer
than `outage_s` for it, events are dropped and counted. When the broker is down, requests
keep being served and the buffer fills; when it is back, the buffer drains.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from kafka import KafkaProducer
from kafka.errors import KafkaError

from bandit import events

log = logging.getLogger(__name__)

_STOP = object()
BATCH_INTERVAL_S = 0.01


# Why an event was not delivered (the `reason` label of artbandit_events_dropped_total).
DROP_REASONS = ("buffer_full", "broker_unavailable", "send_failed")


class EventProducer:
    def __init__(
        self,
        bootstrap_servers: str,
        client_id: str,
        max_outstanding: int,
        outage_s: float = 120.0,
        on_drop: Callable[[str, str], None] = lambda topic, reason: None,
        on_sent: Callable[[str], None] = lambda topic: None,
    ):
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.max_outstanding = max_outstanding
        self.outage_s = outage_s
        self.on_drop = on_drop
        self.on_sent = on_sent
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._outstanding = 0
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def outstanding(self) -> int:
        """Events queued or in flight, not yet acknowledged by Kafka."""
        return self._outstanding

    def send(self, topic: str, key: str, event: events.Event) -> bool:
        """Enqueue `event` for `topic`; False (and counted) when the buffer is full."""
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
        self._queue.put((topic, key, event))
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
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    # Started lazily: after a gunicorn fork, each worker gets its own thread.
                    self._thread = threading.Thread(
                        target=self._run, name="event-producer", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            # Wake at most every BATCH_INTERVAL_S and send all that waits in one burst: a
            # thread woken per event would fight the request thread for the GIL.
            time.sleep(BATCH_INTERVAL_S)
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for item in batch:
                if item is _STOP:
                    return
                self._ship(*item)

    def _ship(self, topic: str, key: str, event: events.Event) -> None:
        try:
            value = events.encode(event)
        except events.EventError as exc:
            log.error("event refused by its own contract, not sent: %s", exc)
            self._done(topic, ok=False, reason="invalid")
            return
        self._produce(topic, key, value)

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        producer = self._connect()
        if producer is None:
            self._done(topic, ok=False, reason="broker_unavailable")
            return
        try:
            future = producer.send(topic, key=key.encode(), value=value)
        except KafkaError as exc:  # e.g. metadata not available within max_block_ms
            log.warning("could not send to %s: %s", topic, exc)
            self._done(topic, ok=False, reason="send_failed")
            return
        future.add_callback(lambda _: self._done(topic, ok=True))
        future.add_errback(lambda _: self._done(topic, ok=False, reason="send_failed"))

    def _connect(self) -> KafkaProducer | None:
        if self._producer is None:
            try:
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=self.client_id,
                    acks=1,
                    enable_idempotence=False,  # acks=1: low latency over exactly-once logging
                    linger_ms=20,  # fewer, larger produce requests: less CPU here and in Kafka
                    batch_size=256 * 1024,
                    max_block_ms=2000,  # blocks only this thread; the buffer absorbs the wait
                    request_timeout_ms=10_000,
                    # Kept (and retried) this long through an outage, then dropped.
                    delivery_timeout_ms=int(self.outage_s * 1000),
                    reconnect_backoff_max_ms=2000,
                )
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
