"""Following the compacted models topic, so a published version is served within moments.

Each message is a version file (see `learner.publisher`); it is verified and installed
into the local model store (a no-op when the store is shared with the learner), then the
registry refreshes. A corrupt message is refused and counted; the current version keeps
serving. The store's periodic reload stays as the fallback when Kafka is unreachable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kafka import TopicPartition
from kafka.errors import KafkaError

from bandit.contracts.kafka import KafkaConfig
from kafkaio import clients
from storage.model_store import ModelStore, ModelStoreError, VersionInfo

log = logging.getLogger(__name__)

RETRY_S = 2.0


class ModelFeed:
    def __init__(
        self,
        kafka: KafkaConfig,
        bootstrap_servers: str,
        topic: str,
        store: ModelStore,
        on_version: Callable[[VersionInfo | None], None],
        client_id: str = "artbandit-serving",
    ):
        """`on_version(info)` runs after each installed version, `on_version(None)` after a
        refused one."""
        self.kafka = kafka
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.store = store
        self.on_version = on_version
        self.client_id = client_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Follow the topic in a daemon thread (once per process: a fork carries no threads)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name="model-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except KafkaError as exc:  # broker away: try again, the store reload covers us
                log.warning("models topic unavailable, retrying: %s", exc)
            except Exception:
                log.exception("model feed failed, retrying")
            self._stop.wait(RETRY_S)

    def _follow(self) -> None:
        consumer = clients.consumer(
            self.kafka, "model_feed", bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
        )  # fmt: skip
        try:
            partitions = consumer.partitions_for_topic(self.topic)
            while not partitions and not self._stop.wait(RETRY_S):
                partitions = consumer.partitions_for_topic(self.topic)  # no learner yet
            if not partitions:
                return
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            consumer.seek_to_beginning(*assigned)  # compacted: the newest version per slot
            while not self._stop.is_set():
                for messages in consumer.poll(timeout_ms=500).values():
                    for message in messages:
                        self._install(message.value)
        finally:
            consumer.close()

    def _install(self, version_file: bytes) -> None:
        try:
            info = self.store.install(version_file)
        except (ModelStoreError, OSError) as exc:
            log.error("refused a published version: %s", exc)
            self.on_version(None)
            return
        self.on_version(info)
