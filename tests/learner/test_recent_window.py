"""The tuning window read from the end of the rewarded topic: the same events a full read
would pick, found without reading the topic from its start (real broker)."""

import random

import pytest
from kafka.admin import NewTopic

from bandit.contracts import events
from bandit.contracts.events import Candidate, Context, PolicyRef, RewardedEvent
from bandit.contracts.kafka import KafkaConfig
from bandit.learning.tuning import recent_window
from kafkaio import clients
from kafkaio.produce import produce
from kafkaio.read import (
    MIN_SPAN,
    Recent,
    decoded,
    read_recent,
    read_topic,
    recent_treatment_messages,
)

PARTITIONS = 3


def rewarded(n: int, slot: str, group: str) -> RewardedEvent:
    decision = events.DecisionEvent(
        decision_id=f"d{n:06d}", ts=1000.0 + n, slot=slot, key="k", user_hash="u",
        group=group, policy=PolicyRef(name="vw", version="v1"), context=Context(),
        candidates=[Candidate(id="a"), Candidate(id="b")], chosen=["a"],
        probabilities=[0.5], explored=False,
    )  # fmt: skip
    return RewardedEvent.from_decision(decision, [float(n % 2)], True, decision.ts + 60)


@pytest.fixture(scope="module")
def mixed_topic(broker):
    """12,000 rewarded events of two slots and both groups (some twice, as an at-least-once
    writer leaves them) and a line that is no event, over three partitions."""
    topic = f"rewarded-window-{random.getrandbits(32):08x}"
    admin = clients.admin(KafkaConfig(), broker.bootstrap_servers)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    admin.close()
    rng = random.Random(3)
    made = [
        rewarded(n, rng.choice(["artwork", "hero"]), rng.choice(["treatment"] * 9 + ["control"]))
        for n in range(12_000)
    ]
    again = rng.sample(made[-500:], 40)
    messages = [(e.decision_id, events.encode(e)) for e in [*made, *again]]
    messages.insert(6000, ("junk", b"not an event"))
    produce(broker.bootstrap_servers, topic, messages)
    return topic, made


def test_the_window_read_from_the_end_is_the_window_of_a_full_read(broker, mixed_topic):
    topic, made = mixed_topic
    for count in (1, 50, 400, 5000):
        found = recent_treatment_messages(KafkaConfig(), broker.bootstrap_servers, topic,
                                          "artwork", count)  # fmt: skip
        recent = list(decoded(found))
        assert recent == recent_window("artwork", made, count)  # each decision once, in order


def test_a_switch_window_is_kept_as_read_and_decoded_as_learned(broker, mixed_topic):
    """The learner's switch keeps its window as messages (ts, id, bytes) and decodes each
    event as it learns it: the same events, in the same order."""
    topic, made = mixed_topic
    window = recent_treatment_messages(KafkaConfig(), broker.bootstrap_servers, topic,
                                       "artwork", 400)  # fmt: skip
    expected = recent_window("artwork", made, 400)
    assert [(r.ts, r.decision_id) for r in window] == [(e.ts, e.decision_id) for e in expected]
    assert all(isinstance(r.value, bytes) for r in window)
    lazily = decoded(window)
    assert next(lazily) == expected[0]  # one at a time, as consumed
    assert [expected[0], *lazily] == expected
    # a message with a rewarded event's header and a broken body is passed over, not raised
    head = window[0]
    broken = Recent(head.ts, head.decision_id, head.value[:-2] + b',"reward":"x"}')
    assert list(decoded([broken, *window[1:3]])) == expected[1:3]


def counting_select(read: list[bytes]):
    def select(value: bytes) -> RewardedEvent | None:
        read.append(value)
        try:
            return events.decode(value, RewardedEvent)
        except events.EventError:
            return None

    return select


def test_only_what_the_window_needs_is_read(broker, mixed_topic):
    topic, made = mixed_topic
    read: list[bytes] = []
    found = read_recent(KafkaConfig(), broker.bootstrap_servers, topic, counting_select(read), 30,
                        key=lambda e: e.decision_id, order=lambda e: e.ts)  # fmt: skip
    assert found == sorted(made, key=lambda e: e.ts)[-30:]
    everything = list(read_topic(KafkaConfig(), broker.bootstrap_servers, topic))
    assert len(everything) == 12_041
    # a first span from each partition is enough
    assert len(read) <= MIN_SPAN * PARTITIONS < len(everything)


def test_a_slot_of_a_share_of_the_topic_is_found_reading_little_past_its_window(
    broker, mixed_topic
):
    """Spans sized by the share kept so far: the hero's treatment events are under half the
    topic, and spans growing fourfold read 2.25 times the window's stretch of it."""
    topic, made = mixed_topic
    read: list[bytes] = []
    select = counting_select(read)

    def hero_treatment(value: bytes) -> RewardedEvent | None:
        event = select(value)
        return event if event and event.slot == "hero" and event.group == "treatment" else None

    found = read_recent(KafkaConfig(), broker.bootstrap_servers, topic, hero_treatment, 2000,
                        key=lambda e: e.decision_id, order=lambda e: e.ts)  # fmt: skip
    wanted = [e for e in made if e.slot == "hero" and e.group == "treatment"][-2000:]
    assert found == wanted
    stretch = sum(1 for e in made if e.ts >= wanted[0].ts)  # what any reader must read
    assert stretch <= len(read) <= 1.5 * stretch, (len(read), stretch)


def test_before_limits_each_partition_and_leaves_the_others_out(broker, mixed_topic):
    topic, _ = mixed_topic
    read: list[bytes] = []
    found = read_recent(KafkaConfig(), broker.bootstrap_servers, topic, counting_select(read), 10**6,
                        key=lambda e: e.decision_id, order=lambda e: e.ts,
                        before={0: 5})  # fmt: skip
    assert len(read) == 5 and len(found) == 5
