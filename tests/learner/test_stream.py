"""The learner against the embedded broker: a scripted stream with every kind of input
yields exactly the expected rewarded events, dead letters, counts and a published version."""

import time

import msgspec

from bandit.contracts import events
from bandit.contracts.events import Candidate, Context, DecisionEvent, FeedbackEvent, PolicyRef
from kafkaio.produce import produce
from kafkaio.topics import ensure_topics
from learner.member import ALIGN_S
from storage.model_store import ModelStore
from tests.helpers import Client, metric_value, read_all, running_learner, wait_for

T0 = time.time() - 3600  # an hour ago: once read to the end, the wall clock closes every window


def decision(decision_id, ts, slot="artwork", group="treatment", chosen=("a",)):
    return DecisionEvent(
        decision_id=decision_id, ts=T0 + ts, slot=slot, key="title:1", user_hash="u1",
        group=group, policy=PolicyRef(name="vw", version="untrained"),
        context=Context(user={"taste": "romance"}, request={"device": "tv"}),
        candidates=[Candidate(id=i, features={"tone": i}) for i in "abcd"],
        chosen=list(chosen), probabilities=[0.5] * len(chosen), explored=False,
    )  # fmt: skip


def feedback(decision_id, kind, ts, position=None):
    return FeedbackEvent(decision_id=decision_id, ts=T0 + ts, type=kind, position=position)


def keyed(*items):
    return [(item.decision_id, events.encode(item)) for item in items]


def drain(learner, consumed: int) -> None:
    """Until the learner has read `consumed` messages and closed every window."""
    wait_for(lambda: learner.status().consumed == consumed, 30)
    wait_for(lambda: learner.status().open_decisions == 0, 30)


def read_events(bootstrap: str, topic: str, type_):
    return [events.decode(value, type_) for value in read_all(bootstrap, topic)]


def test_scripted_stream_gives_exactly_the_expected_rewards_and_dead_letters(learner_config):
    config = learner_config()
    topics = config.kafka.topics
    bootstrap = config.kafka.bootstrap_servers
    decisions = [*keyed(
        decision("d1", 0),  # in order
        decision("d2", 10),  # its feedback arrives before it, the click before the impression
        decision("d3", 12), decision("d3", 12),  # duplicated
        decision("d4", 14),  # never impressed
        decision("d5", 20),  # its click comes after the window
        decision("d6", 22, group="control"),  # logged and rewarded, not learned
        decision("d7", 24, slot="rows", chosen=("a", "b", "c")),
        decision("d8", 26, slot="carousel"),  # a slot this learner does not know
    ),
        ("junk", b"{not json"),
        ("d9", events.encode(feedback("d9", "click", 27))),  # feedback on the decisions topic
    ]  # fmt: skip
    watch = msgspec.json.encode(
        {"schema": "artbandit.feedback/1", "decision_id": "d1", "ts": T0 + 3, "type": "watch",
         "value": -3.0}
    )  # fmt: skip
    feedbacks = [*keyed(
        feedback("d2", "click", 12), feedback("d2", "impression", 11),
        feedback("d1", "impression", 1), feedback("d1", "click", 2),
        feedback("d3", "impression", 13), feedback("d3", "impression", 13),
        feedback("d3", "click", 14), feedback("d3", "click", 14),
        feedback("d5", "impression", 21), feedback("d5", "click", 20 + 60 + 10 + 5),
        feedback("d6", "impression", 23), feedback("d6", "click", 24),
        feedback("d7", "impression", 25, 0), feedback("d7", "impression", 25, 1),
        feedback("d7", "click", 26, 1), feedback("d7", "click", 26, 5),
        feedback("ghost", "click", 27),
    ), ("d1", watch)]  # fmt: skip
    with running_learner(config) as learner:
        produce(bootstrap, topics.decisions, decisions)
        produce(bootstrap, topics.feedback, feedbacks)
        drain(learner, len(decisions) + len(feedbacks))
        exposition = Client("127.0.0.1", learner.metrics_port).get("/metrics")[1]
    rewarded = read_events(bootstrap, topics.rewarded, events.RewardedEvent)
    assert sorted((r.decision_id, r.group, tuple(r.rewards)) for r in rewarded) == [
        ("d1", "treatment", (0.5,)),
        ("d2", "treatment", (0.5,)),
        ("d3", "treatment", (0.5,)),
        ("d5", "treatment", (0.0,)),
        ("d6", "control", (0.5,)),
        ("d7", "treatment", (0.0, 0.5, 0.0)),
    ]
    dead = read_events(bootstrap, topics.deadletter, events.DeadLetterEvent)
    assert sorted((d.code, d.key) for d in dead) == [
        ("bad_position", "d7"),
        ("late", "d5"),
        ("malformed", "d1"),  # a watch of -3 minutes
        ("malformed", "junk"),
        ("unknown_decision", "ghost"),
        ("unknown_slot", "d8"),
        ("wrong_topic", "d9"),
    ]
    assert all(d.reason for d in dead)
    assert metric_value(exposition, "artbandit_learner_joins_total", outcome="rewarded") == 6
    assert metric_value(exposition, "artbandit_learner_joins_total", outcome="not_impressed") == 1
    assert metric_value(exposition, "artbandit_learner_joins_total", outcome="duplicate") == 3
    assert metric_value(exposition, "artbandit_learner_joins_total", outcome="late") == 1
    assert metric_value(exposition, "artbandit_learner_joins_total", outcome="deadletter") == 6
    learned = "artbandit_learner_examples_learned_total"
    assert metric_value(exposition, learned, slot="artwork") == 4  # d1 d2 d3 d5; not control d6
    assert metric_value(exposition, learned, slot="rows") == 1
    # the reward rate by group: decisions and reward sums as written to the rewarded topic
    count, total = "artbandit_learner_rewarded_decisions_total", "artbandit_learner_reward_total"
    assert metric_value(exposition, count, slot="artwork", group="treatment") == 4
    assert metric_value(exposition, total, slot="artwork", group="treatment") == 1.5
    assert metric_value(exposition, count, slot="artwork", group="control") == 1
    assert metric_value(exposition, total, slot="artwork", group="control") == 0.5
    assert metric_value(exposition, total, slot="rows", group="treatment") == 0.5
    consumed = "artbandit_learner_events_consumed_total"
    assert metric_value(exposition, consumed, topic=topics.feedback) == len(feedbacks)
    store = ModelStore(config.model_store.path)
    assert store.load_latest("artwork").info.examples_learned == 4
    assert store.versions("hero") == []  # nothing learned, nothing published


def test_tombstones_are_dead_lettered_and_a_binary_key_does_not_matter(learner_config):
    config = learner_config()
    topics = config.kafka.topics
    bootstrap = config.kafka.bootstrap_servers
    binary = b"\xff\xfe"  # not UTF-8; the same key puts the three in one partition
    produce(bootstrap, topics.decisions, [("t1", None), (binary, events.encode(decision("g1", 0)))])
    produce(bootstrap, topics.feedback, [
        ("t2", None), (binary, events.encode(feedback("g1", "impression", 1))),
        (binary, events.encode(feedback("g1", "click", 2))),
    ])  # fmt: skip
    with running_learner(config) as learner:
        drain(learner, 5)
        assert learner.status().learned["artwork"] == 1
    rewarded = read_events(bootstrap, topics.rewarded, events.RewardedEvent)
    assert [(r.decision_id, r.rewards) for r in rewarded] == [("g1", [0.5])]
    dead = read_events(bootstrap, topics.deadletter, events.DeadLetterEvent)
    assert sorted((d.code, d.key, d.topic, d.payload) for d in dead) == [
        ("malformed", "t1", topics.decisions, ""),
        ("malformed", "t2", topics.feedback, ""),
    ]
    assert all("tombstone" in d.reason for d in dead)


def newer(event, **extra) -> bytes:
    """`event` as a newer release of the same schema version would write it: more fields at
    the top, in the policy, the context and a candidate."""
    raw = msgspec.json.decode(events.encode(event))
    raw.update(extra)
    if "policy" in raw:
        raw["policy"]["experiment"] = "e7"
        raw["context"]["locale"] = "fr"
        raw["candidates"][0]["rank_hint"] = 3
    return msgspec.json.encode(raw)


def test_an_older_learner_reads_a_newer_writers_events_and_refuses_a_new_version(learner_config):
    config = learner_config()
    topics = config.kafka.topics
    bootstrap = config.kafka.bootstrap_servers
    produce(bootstrap, topics.decisions, [
        ("n1", newer(decision("n1", 0), holdout_fraction=0.05, page_id="p1")),
        ("n2", newer(decision("n2", 1), schema="artbandit.decision/2")),
    ])  # fmt: skip
    produce(bootstrap, topics.feedback, [
        ("n1", newer(feedback("n1", "impression", 1), device_ts=5.0)),
        ("n1", newer(feedback("n1", "click", 2))),
    ])  # fmt: skip
    with running_learner(config) as learner:
        drain(learner, 4)
        assert learner.status().learned["artwork"] == 1
    rewarded = read_events(bootstrap, topics.rewarded, events.RewardedEvent)
    assert [(r.decision_id, r.rewards) for r in rewarded] == [("n1", [0.5])]
    (dead,) = read_events(bootstrap, topics.deadletter, events.DeadLetterEvent)
    assert (dead.code, dead.key) == ("newer_schema", "n2")
    assert "artbandit.decision/2" in dead.reason and "upgrade" in dead.reason


def test_catching_up_the_feedback_waits_for_the_decisions_it_runs_ahead_of(learner_config):
    """A backlog's small feedback messages drain faster than its decisions: the learner
    pauses the input that runs ahead in event time, so little feedback waits in memory."""
    config = learner_config("learner.max_poll_records=200", "learner.partitions=1")
    ensure_topics(config, config.kafka.bootstrap_servers)  # one partition, not the broker's
    padding = {f"f{k}": "x" * 40 for k in range(60)}  # decisions ten times feedback's size
    rate = 20  # decisions a second of event time
    stream = [
        msgspec.structs.replace(decision(f"d{i:05d}", i / rate), context=Context(user=padding))
        for i in range(6000)
    ]  # 5 minutes
    impressions = [feedback(f"d{i:05d}", "impression", i / rate + 1) for i in range(6000)]
    produce(config.kafka.bootstrap_servers, config.kafka.topics.feedback, keyed(*impressions))
    produce(config.kafka.bootstrap_servers, config.kafka.topics.decisions, keyed(*stream))
    most_waiting = 0
    with running_learner(config, serve_metrics=False) as learner:

        def done() -> bool:
            nonlocal most_waiting
            most_waiting = max(most_waiting, learner.status().waiting)
            return learner.status().learned.get("artwork", 0) == 6000

        wait_for(done, timeout_s=120, interval_s=0.01)
    # ALIGN_S of event time at rate decisions a second, plus a poll's worth of records each
    assert most_waiting <= rate * ALIGN_S + 200 + 200, most_waiting
