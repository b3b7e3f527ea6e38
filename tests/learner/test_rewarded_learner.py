"""Join-only members and one rewarded learner: two members join their shares of the
partitions and learn nothing; the rewarded learner learns every rewarded event of both
exactly once, passing over events a member wrote again after a restart, and survives
SIGKILL at random points with the exact count."""

import random
import signal
import subprocess
import sys
import threading
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bandit.contracts import events
from bandit.learning.learner_core import weight_sampled
from kafkaio.embedded_broker import free_port
from kafkaio.topics import ensure_topics
from learner.checkpoint_store import CheckpointStore
from learner.rewarded_loop import RewardedLearner
from storage.config_file import load_config
from storage.model_store import ModelStore
from tests.faults.harness import artwork_backlog
from tests.helpers import Client, metric_value, read_all, running_learner, wait_for

DECISIONS = 3000


def _join(base, seed: int, decisions: int = DECISIONS):
    """Two join-only members of one group join a backlog until every impressed decision is
    on the rewarded topic; its config and stream."""
    config = load_config(overrides=base, environ={})
    ensure_topics(config, config.kafka.bootstrap_servers)  # every topic with the same count
    config, stream = artwork_backlog(base, seed=seed, decisions=decisions)
    members = [load_config(overrides=[*base, f'learner.member="join-{i}"'], environ={})
               for i in (1, 2)]  # fmt: skip
    topic = config.kafka.topics.rewarded
    with running_learner(members[0]) as one, running_learner(members[1]) as two:
        wait_for(
            lambda: len({events.decode(v, events.RewardedEvent).decision_id
                         for v in read_all(config.kafka.bootstrap_servers, topic, 0.5)})
            >= stream.impressed, timeout_s=120, interval_s=1.0,
        )  # fmt: skip
        assert sum(one.status().learned.values()) + sum(two.status().learned.values()) == 0
    return config, stream


def _rewrite(config, count: int) -> None:
    """A join member's rewrite after a restart: the first `count` events of partition 0,
    written again to partition 0 in their order."""
    topic, bootstrap = config.kafka.topics.rewarded, config.kafka.bootstrap_servers
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    again = []
    while len(again) < count:
        for messages in consumer.poll(timeout_ms=1000).values():
            again += messages
    consumer.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for message in again[:count]:
        producer.send(topic, message.value, message.key, partition=0)
    producer.flush()
    producer.close()


def test_join_only_members_and_one_rewarded_learner_learn_every_event_once(learner_overrides):
    base = learner_overrides("learner.learns=false")
    config, stream = _join(base, seed=5)
    assert ModelStore(config.model_store.path).versions("artwork") == []  # they learn nothing
    _rewrite(config, 400)

    slot_learner = load_config(overrides=[*base, 'learner.member="artwork-learner"',
                                          'learner.slots=["artwork"]'], environ={})  # fmt: skip
    learner = RewardedLearner(slot_learner, config.kafka.bootstrap_servers, serve_metrics=False)
    stop = threading.Event()
    thread = threading.Thread(target=learner.run, args=(stop,), daemon=True)
    thread.start()
    wait_for(lambda: learner.outcomes["learned"] + learner.outcomes["duplicate"]
             >= stream.learnable + 400 and learner.consumed >= stream.impressed + 400,
             timeout_s=120)  # fmt: skip
    stop.set()
    thread.join(60)
    assert not thread.is_alive()
    assert learner.outcomes["learned"] == stream.learnable
    assert learner.outcomes["duplicate"] == 400
    checkpoint = CheckpointStore(slot_learner.learner.checkpoint_dir, "artwork-learner").latest()
    assert checkpoint.slots["artwork"].learned_here == stream.learnable
    store = ModelStore(config.model_store.path)
    newest = store.load_latest("artwork", slot_learner.slots["artwork"]).info
    assert newest.examples_learned == stream.learnable
    # The replay gauges weigh the sampled treatment events, each once despite the rewrite
    rewarded = [
        events.decode(v, events.RewardedEvent)
        for v in read_all(config.kafka.bootstrap_servers, config.kafka.topics.rewarded)
    ]
    sampled = {e.decision_id for e in rewarded if e.slot == "artwork" and weight_sampled(e)}
    assert len(sampled) > 50 and len(learner.resources.weights["artwork"]) == len(sampled)
    gauge = learner.metrics.registry.get_sample_value
    assert gauge("artbandit_learner_replay_max_weight", {"slot": "artwork"}) > 0
    assert 0 < gauge("artbandit_learner_replay_effective_share", {"slot": "artwork"}) <= 1


def test_a_rewarded_learner_killed_at_random_points_learns_each_event_once(learner_overrides):
    base = learner_overrides("learner.learns=false", "learner.checkpoint_interval_s=0.3",
                             "learner.max_poll_records=100")  # fmt: skip
    config, stream = _join(base, seed=6, decisions=6000)  # it learns 10,000 a second
    _rewrite(config, 300)
    member = 'learner.member="killed"'
    port = free_port()
    args = [f"--set={o}" for o in [*base, member, f"learner.metrics_port={port}"]]

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "artbandit", "learn", "--from-rewarded", "--quiet", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def learned() -> float:
        try:
            text = Client("127.0.0.1", port).get("/metrics")[1]
        except OSError:
            return 0.0
        return metric_value(text, "artbandit_learner_examples_learned_total", slot="artwork")

    rng = random.Random(4)
    at_kills = []
    for target in sorted(rng.sample(range(200, stream.learnable // 2), 5)):
        process = start()
        wait_for(lambda target=target, process=process: learned() >= target
                 or process.poll() is not None, 90, interval_s=0.02)  # fmt: skip
        time.sleep(rng.uniform(0.0, 0.01))
        assert process.poll() is None
        at_kills.append(learned())
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    process = start()
    wait_for(lambda: learned() >= stream.learnable, 120)
    time.sleep(1.0)  # anything past the count would show in the final checkpoint
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    assert len(at_kills) == 5 and all(0 < n < stream.learnable for n in at_kills), at_kills
    final = load_config(overrides=[*base, member], environ={}).learner
    checkpoint = CheckpointStore(final.checkpoint_dir, final.member).latest()
    assert checkpoint.slots["artwork"].learned_here == stream.learnable
    assert checkpoint.slots["artwork"].examples_learned == stream.learnable


def test_a_rewarded_learner_switches_to_tuned_settings_warm_started_on_what_it_read(
    learner_overrides,
):
    base = learner_overrides("learner.learns=false", "tuning.window_events=300")
    config, stream = _join(base, seed=7, decisions=1500)
    slot_learner = load_config(overrides=[*base, 'learner.member="artwork-learner"',
                                          'learner.slots=["artwork"]'], environ={})  # fmt: skip
    store = ModelStore(config.model_store.path)
    learner = RewardedLearner(slot_learner, config.kafka.bootstrap_servers, serve_metrics=False)
    stop = threading.Event()
    thread = threading.Thread(target=learner.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: learner.outcomes["learned"] == stream.learnable > 300, 120)
        assert learner.core.tuned("artwork").revision == 0
        # what `artbandit tune` records when a candidate wins
        store.update_tuning(
            "artwork", lambda s: s.record(["learning_rate=0.3"], "tuned", "t", at=time.time())
        )
        wait_for(lambda: learner.core.tuned("artwork").revision == 1, 30)
        policy = learner.core.policies["artwork"]
        assert policy.slot.learning_rate == 0.3
        assert policy.examples_learned == 300  # the newest 300 it read, once each
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    checkpoint = CheckpointStore(slot_learner.learner.checkpoint_dir, "artwork-learner").latest()
    state = checkpoint.slots["artwork"]
    assert (state.tuning_revision, state.tuned, state.examples_learned) == (
        1, ["learning_rate=0.3"], 300,
    )  # fmt: skip
    info, _ = store.read_info("artwork", store.versions("artwork")[-1])
    assert (info.tuning_revision, info.examples_learned) == (1, 300)
    gauge = learner.metrics.registry.get_sample_value
    assert gauge("artbandit_learner_tuning_switches_total", {"slot": "artwork"}) == 1
