"""Reading a topic to its end: the replay's `kafka://` logs and the learner's warm starts."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping

from kafka import TopicPartition

from bandit.contracts.kafka import KafkaConfig
from kafkaio import clients


class TopicMissing(LookupError):
    """The topic does not exist (or has none of the partitions asked for)."""


def read_topic(
    kafka: KafkaConfig,
    bootstrap_servers: str,
    topic: str,
    partitions: Collection[int] | None = None,
    progress: Callable[[int, int], None] = lambda read, total: None,
    before: Mapping[int, int] | None = None,
) -> Iterator[bytes]:
    """Every message value of `topic` (of `partitions`, default all) until each partition is
    read to its high watermark; `progress(read, total)` follows once the ends are known.
    `before`: only the messages below these offsets, by partition (none of another one).

    The high watermark comes from the fetch responses: some Kafka-protocol brokers (the
    embedded Tansu) answer ListOffsets with the last batch's start, not the log's end.
    """
    consumer = clients.consumer(kafka, "reader", bootstrap_servers=bootstrap_servers)
    try:
        present = consumer.partitions_for_topic(topic) or set()
        wanted = sorted(present if partitions is None else present & set(partitions))
        if not wanted:
            raise TopicMissing(f"kafka://{topic}: no such topic or partitions")
        assigned = [TopicPartition(topic, p) for p in wanted]
        consumer.assign(assigned)
        consumer.seek_to_beginning()
        read, idle_polls = 0, 0
        while True:
            batch = consumer.poll(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    read += 1
                    if before is None or message.offset < before.get(message.partition, 0):
                        yield message.value
            highwaters = [consumer.highwater(tp) for tp in assigned]
            done = all(
                h is not None and consumer.position(tp) >= h
                for tp, h in zip(assigned, highwaters, strict=True)
            )
            idle_polls = 0 if batch else idle_polls + 1
            if done or idle_polls >= 20:  # 10 s without a message: an empty partition
                break
            if all(h is not None for h in highwaters):
                progress(read, sum(h for h in highwaters if h is not None))
    finally:
        consumer.close()
