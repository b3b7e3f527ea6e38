"""Reading a topic: to its end (the replay's `kafka://` logs), or only its newest messages of
one kind (the tuner's and the learner's window of recent events), whatever its length."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import msgspec
from kafka import KafkaConsumer, TopicPartition

from bandit.contracts import events
from bandit.contracts.kafka import KafkaConfig
from kafkaio import clients

T = TypeVar("T")
IDLE_POLLS = 20  # polls of 500 ms without a message: a partition that will not fill up
# Spans read back from a partition's end are at least this long: an at-least-once writer may
# have put a few older events after newer ones, and a span must see past them.
MIN_SPAN = 256
SPARE = 1.25  # a span's margin over what the kept share so far says is missing


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
    order: Callable[[T], float],
    partitions: Collection[int] | None = None,
    before: Mapping[int, int] | None = None,
) -> list[T]:
    """The newest `count` messages that `select` keeps, across the partitions, by `order`
    (each `key` once), oldest first. Every partition is read backwards from its end, a span
    at a time (the first its share of `count`, each next what the share kept so far says
    the missing ones need: `_next_spans`), until the kept ones number `count` and every
    partition has been read back past the oldest of them: a call costs what it takes to
    find them, not the topic's length (spans are at least MIN_SPAN long, to see past events
    written out of order). `before`: as in `read_topic`."""
    consumer = clients.consumer(kafka, "reader", bootstrap_servers=bootstrap_servers)
    try:
        wanted = _wanted(consumer, topic, partitions)
        share = max(MIN_SPAN, -(-count // len(wanted)))
        stops = {p: None if before is None else before.get(p, 0) for p in wanted}
        cursors = [
            _Cursor.at_end(consumer, TopicPartition(topic, p), share, stops[p]) for p in wanted
        ]
        found: dict[str, T] = {}
        while True:
            for cursor in cursors:
                if not cursor.done:
                    cursor.reached = math.inf
                    for item in cursor.read_back(consumer, select):
                        cursor.kept += 1
                        found.setdefault(key(item), item)
                        cursor.reached = min(cursor.reached, order(item))
            newest = sorted(found.values(), key=order)[-count:]
            if len(newest) >= count:
                found = {key(item): item for item in newest}  # what is older stays out
                cutoff = order(newest[0])
                for cursor in cursors:  # read back past the window: what is older stays out
                    cursor.done |= cursor.reached < cutoff
            if all(cursor.done for cursor in cursors):
                return newest
            _next_spans(cursors, count - len(found))
    finally:
        consumer.close()


def _next_spans(cursors: list[_Cursor], missing: int) -> None:
    """Size the open cursors' next spans by the share of messages kept so far: enough for
    the `missing` ones with a quarter to spare, at most four times the last span. A slot
    that is one decision in eight is found reading about 1.2 times its window's stretch of
    the topic instead of up to 2.6 times (spans growing fourfold); with nothing kept yet,
    or the window full and only the cutoff to pass, a span grows fourfold or stays."""
    open_ = [cursor for cursor in cursors if not cursor.done]
    read = sum(cursor.read for cursor in cursors)
    kept = sum(cursor.kept for cursor in cursors)
    for cursor in open_:
        if missing <= 0:
            continue  # each needs only to pass the window's oldest message: same span again
        if kept == 0:
            cursor.span *= 4
            continue
        need = math.ceil(missing * read / kept * SPARE / len(open_))
        cursor.span = min(4 * cursor.span, max(MIN_SPAN, need))


def _wanted(consumer: KafkaConsumer, topic: str, partitions: Collection[int] | None) -> list[int]:
    """The partitions of `topic` asked for (default all) that exist; TopicMissing if none."""
    present = consumer.partitions_for_topic(topic) or set()
    wanted = sorted(present if partitions is None else present & set(partitions))
    if not wanted:
        raise TopicMissing(f"kafka://{topic}: no such topic or partitions")
    return wanted


@dataclass
class _Cursor:
    """How far back one partition has been read, and the oldest `order` its last span kept:
    once that is older than the window, what lies further back is older still."""

    tp: TopicPartition
    first: int  # the partition's first offset
    start: int  # where the next span ends (the oldest offset read so far)
    span: int
    done: bool = False
    reached: float = math.inf
    read: int = 0  # offsets read back so far
    kept: int = 0  # of them, messages `select` kept

    @classmethod
    def at_end(
        cls, consumer: KafkaConsumer, tp: TopicPartition, span: int, stop: int | None
    ) -> _Cursor:
        consumer.assign([tp])
        first = int(consumer.beginning_offsets([tp])[tp])
        end = stop if stop is not None else _end(consumer, tp)
        return cls(tp, first, end, span, done=end <= first)

    def read_back(
        self, consumer: KafkaConsumer, select: Callable[[bytes], T | None]
    ) -> Iterator[T]:
        """The kept messages of the next span back."""
        start = max(self.first, self.start - self.span)
        consumer.assign([self.tp])
        for value in _span(consumer, self.tp, start, self.start):
            item = select(value)
            if item is not None:
                yield item
        self.read += self.start - start
        self.start = start
        self.done = start <= self.first


def _end(consumer: KafkaConsumer, tp: TopicPartition) -> int:
    """The partition's end as a fetch tells it. Some brokers (the embedded Tansu) answer
    ListOffsets with the last batch's start, which may be the partition's start."""
    told = int(consumer.end_offsets([tp])[tp])
    consumer.seek(tp, told)
    for _ in range(IDLE_POLLS):
        consumer.poll(timeout_ms=500)
        highwater = consumer.highwater(tp)
        if highwater is not None:
            return max(int(highwater), told)
    return told


def _span(consumer: KafkaConsumer, tp: TopicPartition, start: int, upper: int) -> Iterator[bytes]:
    """The values at offsets from `start` below `upper`, as they are fetched: a span may be
    four times the window, so it is never held whole."""
    consumer.seek(tp, start)
    idle_polls = 0
    while True:
        batch = consumer.poll(timeout_ms=500)
        for messages in batch.values():
            yield from (m.value for m in messages if m.offset < upper)
        idle_polls = 0 if batch else idle_polls + 1
        if int(consumer.position(tp)) >= upper or idle_polls >= IDLE_POLLS:
            return


class Recent(NamedTuple):
    """A rewarded event of a window as it was read: what a window is ordered and deduplicated
    by, and the message itself, decoded when it is learned (`decoded`). 50,000 messages take
    about 75 MB as bytes, about a third of what they take decoded, which bounds the peak of
    a switch."""

    ts: float
    decision_id: str
    value: bytes


class _Header(msgspec.Struct, frozen=True):
    ts: float
    decision_id: str
    slot: str
    group: str


_HEADER = msgspec.json.Decoder(_Header)


def recent_treatment_messages(
    kafka: KafkaConfig,
    bootstrap_servers: str,
    topic: str,
    slot: str,
    count: int,
    partitions: Collection[int] | None = None,
    before: Mapping[int, int] | None = None,
) -> list[Recent]:
    """The slot's newest `count` treatment events on a rewarded topic, each decision once,
    oldest first, as read (`Recent`): the window a switch warm-starts on. Only the fields
    that select and order them are decoded here."""

    def treatment(value: bytes) -> Recent | None:
        try:
            head = _HEADER.decode(value)
        except (msgspec.DecodeError, RecursionError):
            return None  # not a learner's output; `decoded` passes it over
        if head.slot != slot or head.group != "treatment":
            return None
        return Recent(head.ts, head.decision_id, value)

    return read_recent(
        kafka, bootstrap_servers, topic, treatment, count, lambda r: r.decision_id,
        lambda r: r.ts, partitions, before,
    )  # fmt: skip


def decoded(window: Iterable[Recent]) -> Iterator[events.RewardedEvent]:
    """The window's events, decoded one at a time as they are consumed (`list(...)` for
    the tuner, which replays the window whole); a message that is not a whole rewarded
    event is passed over."""
    for item in window:
        try:
            yield events.decode(item.value, events.RewardedEvent)
        except events.EventError:
            continue
