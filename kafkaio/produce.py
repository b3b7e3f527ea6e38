"""Putting logged events on Kafka the way serving and a frontend do: keyed by decision_id,
so a decision and its feedback land in the same partition number of their topics."""

from __future__ import annotations

from collections.abc import Iterable

from bandit.config import Config
from bandit.contracts import events
from bandit.contracts.kafka import KafkaConfig
from kafkaio import clients


def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[str | bytes | None, bytes | None]],
    kafka: KafkaConfig | None = None,
) -> int:
    """Send (key, value) pairs to `topic` and wait for every acknowledgement (a str key is sent
    as UTF-8; a None value is a tombstone). `kafka`: the connection settings (default plain)."""
    producer = clients.producer(kafka or KafkaConfig(), "tool_producer", bootstrap)
    sent = []
    try:
        for key, value in messages:
            key_bytes = key.encode() if isinstance(key, str) else key
            sent.append(producer.send(topic, value=value, key=key_bytes))
        producer.flush(120)
    finally:
        producer.close(10)
    failed = [future for future in sent if not future.succeeded()]
    if failed:
        raise ProduceError(
            f"{topic}: {len(failed):,} of {len(sent):,} messages not acknowledged "
            f"(first: {failed[0].exception!r})"
        )
    return len(sent)


class ProduceError(RuntimeError):
    """Some messages were not acknowledged: the caller must not assume they are on Kafka."""


def produce_stream(
    config: Config, stream: Iterable[events.DecisionEvent | events.FeedbackEvent]
) -> tuple[int, int]:
    """Put decisions and feedback on their topics; returns how many of each."""
    topics = config.kafka.topics
    decisions: list[tuple[str | bytes | None, bytes | None]] = []
    feedback: list[tuple[str | bytes | None, bytes | None]] = []
    for event in stream:
        target = decisions if isinstance(event, events.DecisionEvent) else feedback
        target.append((event.decision_id, events.encode(event)))
    bootstrap = config.kafka.bootstrap_servers
    return (
        produce(bootstrap, topics.decisions, decisions, config.kafka),
        produce(bootstrap, topics.feedback, feedback, config.kafka),
    )
