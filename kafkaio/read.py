"""Reading a topic: to its end (the replay's `kafka://` logs), or only its newest messages of
one kind (the tuner's and the learner's window of recent events), whatever its length."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from typing import TypeVar

from kafka import KafkaConsumer, TopicPartition

from bandit.contracts import events
from bandit.contracts.kafka import KafkaConfig
from kafkaio import clients

T = TypeVar("T")
IDLE_POLLS = 20  # polls of 500 ms without a message: a partition that will not fill up


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
        assigned = [TopicPartition(topic, p) for p in _wanted(consumer, topic, partitions)]
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
            if done or idle_polls >= IDLE_POLLS:
                break
            if all(h is not None for h in highwaters):
                progress(read, sum(h for h in highwaters if h is not None))
    finally:
        consumer.close()


def read_recent(
    kafka: KafkaConfig,
    bootstrap_servers: str,
    topic: str,
    select: Callable[[bytes], T | None],
    count: int,
    key: Callable[[T], str],
    partitions: Collection[int] | None = None,
    before: Mapping[int, int] | None = None,
) -> list[T]:
    """The newest messages of each partition that `select` keeps, at least `count` distinct
    by `key` where the partition holds that many, oldest first. Each partition is read
    backwards from its end in spans that grow fourfold, so a call costs what it takes to find
    them, not the topic's length. `before`: as in `read_topic`."""
    consumer = clients.consumer(kafka, "reader", bootstrap_servers=bootstrap_servers)
    try:
        found: list[T] = []
        for partition in _wanted(consumer, topic, partitions):
            stop = None if before is None else before.get(partition, 0)
            tp = TopicPartition(topic, partition)
            found += _recent_of(consumer, tp, select, count, key, stop)
        return found
    finally:
        consumer.close()


def _wanted(consumer: KafkaConsumer, topic: str, partitions: Collection[int] | None) -> list[int]:
    """The partitions of `topic` asked for (default all) that exist; TopicMissing if none."""
    present = consumer.partitions_for_topic(topic) or set()
    wanted = sorted(present if partitions is None else present & set(partitions))
    if not wanted:
        raise TopicMissing(f"kafka://{topic}: no such topic or partitions")
    return wanted


def _recent_of(
    consumer: KafkaConsumer,
    tp: TopicPartition,
    select: Callable[[bytes], T | None],
    count: int,
    key: Callable[[T], str],
    stop: int | None,
) -> list[T]:
    consumer.assign([tp])
    first = int(consumer.beginning_offsets([tp])[tp])
    # Some brokers answer the end with the last batch's start: the first span then starts a
    # little earlier than it needs to, and reads on to the end the fetches tell.
    end = stop if stop is not None else int(consumer.end_offsets([tp])[tp])
    if end <= first:
        return []
    spans: list[list[T]] = []
    keys: set[str] = set()
    span, upper = max(count, 1), stop
    start = max(first, end - span)
    while True:
        kept = [item for value in _span(consumer, tp, start, upper)
                if (item := select(value)) is not None]  # fmt: skip
        spans.append(kept)
        keys.update(key(item) for item in kept)
        if len(keys) >= count or start <= first:
            return [item for kept in reversed(spans) for item in kept]
        upper, span = start, span * 4
        start = max(first, start - span)


def _span(
    consumer: KafkaConsumer, tp: TopicPartition, start: int, upper: int | None
) -> list[bytes]:
    """The values at offsets from `start` below `upper` (None: to the end)."""
    consumer.seek(tp, start)
    values: list[bytes] = []
    idle_polls = 0
    while True:
        batch = consumer.poll(timeout_ms=500)
        for messages in batch.values():
            values += [m.value for m in messages if upper is None or m.offset < upper]
        position = int(consumer.position(tp))
        limit = upper if upper is not None else consumer.highwater(tp)
        idle_polls = 0 if batch else idle_polls + 1
        if (limit is not None and position >= limit) or idle_polls >= IDLE_POLLS:
            return values


def recent_treatment(
    kafka: KafkaConfig,
    bootstrap_servers: str,
    topic: str,
    slot: str,
    count: int,
    partitions: Collection[int] | None = None,
    before: Mapping[int, int] | None = None,
) -> list[events.RewardedEvent]:
    """The slot's newest treatment events on a rewarded topic, each decision once: at least
    `count` per partition that has them (the window the tuner replays and a switch warm
    starts on). Values that are not rewarded events are passed over."""

    def treatment(value: bytes) -> events.RewardedEvent | None:
        try:
            event = events.decode(value, events.RewardedEvent)
        except events.EventError:
            return None  # not a learner's output; the replay reports such lines
        return event if event.slot == slot and event.group == "treatment" else None

    found = read_recent(
        kafka, bootstrap_servers, topic, treatment, count, lambda e: e.decision_id,
        partitions, before,
    )  # fmt: skip
    return list({event.decision_id: event for event in reversed(found)}.values())
