"""Every event type survives a trip through a real Kafka-protocol broker."""

import time

from kafka import KafkaConsumer, KafkaProducer

from bandit.contracts import events
from bandit.contracts.events import FeedbackEvent, RewardedEvent
from bandit.contracts.slots import SlotConfig, SlotKind
from bandit.policies import build_policy
from sim.synthetic import SyntheticWorld


def _sample_events() -> list:
    sample = []
    for kind in SlotKind:
        world = SyntheticWorld(kind, seed=1, candidates_per_round=6)
        policy = build_policy(SlotConfig(kind=kind, seed=1, select=3))
        round_ = world.draw()
        choice = policy.decide(round_.context, round_.candidates)
        decision = world.decision_event(round_, choice, kind.value)
        rewarded = world.rewarded_event(round_, choice, kind.value)
        feedback = FeedbackEvent(decision_id=rewarded.decision_id, ts=time.time(), type="watch",
                                 position=0, value=12.5)  # fmt: skip
        sample += [decision, feedback, rewarded]
    return sample


def test_every_event_type_round_trips_through_the_broker(broker, topic):
    sent = _sample_events()
    assert {type(e).__name__ for e in sent} == {"DecisionEvent", "FeedbackEvent", "RewardedEvent"}
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    for event in sent:
        producer.send(topic, events.encode(event), key=event.decision_id.encode())
    producer.flush(timeout=10)
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=15_000,
    )
    received = []
    for message in consumer:
        received.append(events.decode(message.value))
        assert message.key == received[-1].decision_id.encode()
        if len(received) == len(sent):
            break
    consumer.close()
    # Kafka orders messages per partition, and so per key (decision_id): compare in that order.
    assert _by_key(received) == _by_key(sent)
    assert sum(isinstance(e, RewardedEvent) for e in received) == len(SlotKind)


def _by_key(sample: list) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for event in sample:
        grouped.setdefault(event.decision_id, []).append(event)
    return grouped
