"""The host's shipper on the embedded broker: what workers hand it arrives on Kafka once,
unchanged; a shipper killed and restarted loses nothing handed over after it is
back (workers hold what waits); half a frame is never taken; an event that breaks its
contract is refused, counted, and does not stop the others."""

import os
import signal
import socket
import threading
import time

import msgspec
import pytest

from bandit.contracts import events
from bandit.contracts.slots import SlotKind
from bandit.policies import build_policy
from kafkaio.topics import ensure_topics
from serving.event_producer import EventProducer
from serving.shipper import Shipper, ShipperClient, frame
from serving.shipper_process import ShipperProcess
from sim.synthetic import SyntheticWorld, logged_stream
from storage.config_file import load_config
from tests.helpers import read_topic, wait_for


def decisions(count: int, seed: int = 1) -> list[events.DecisionEvent]:
    world = SyntheticWorld(SlotKind.ARTWORK, seed=seed, candidates_per_round=10)
    policy = build_policy(load_config(environ={}).slots["artwork"])
    stream = logged_stream(world, policy, "artwork", count, start_ts=time.time())
    return [e for e in stream.events if isinstance(e, events.DecisionEvent)]


@pytest.fixture
def shipping(tmp_path, broker, topic):
    config = load_config(
        overrides=[f'kafka.bootstrap_servers="{broker.bootstrap_servers}"',
                   f'kafka.topics.decisions="{topic}"'],
        environ={},
    )  # fmt: skip
    ensure_topics(config, broker.bootstrap_servers)
    return config, str(tmp_path / "events.sock")


def by_id(logged: list) -> list:
    return sorted(logged, key=lambda e: e.decision_id)


def test_events_handed_over_arrive_once_and_unchanged(shipping, broker, topic):
    config, path = shipping
    sent = decisions(2000)
    with ShipperProcess(config, path):
        client = ShipperClient(path, max_outstanding=10_000, outage_s=60)
        assert all(client.send(topic, e.decision_id, e) for e in sent)
        assert client.flush(10)
        client.close()
        arrived = read_topic(broker.bootstrap_servers, topic, len(sent) + 1, timeout_s=2)
    assert by_id(arrived) == by_id(sent)  # each once, field for field


def test_a_killed_shipper_is_restarted_and_what_workers_hand_over_after_is_delivered(
    shipping, broker, topic
):
    """What a shipper had in memory when killed is lost, as a killed worker's buffer is; the
    workers' connections to it break, and they reconnect to its successor."""
    config, path = shipping
    first, second = decisions(300, seed=1), decisions(700, seed=2)
    dropped = []
    with ShipperProcess(config, path) as shipper:
        client = ShipperClient(path, 10_000, 60, lambda topic, reason: dropped.append(reason))
        for e in first:
            client.send(topic, e.decision_id, e)
        assert client.flush(10)
        wait_for(lambda: len(read_topic(broker.bootstrap_servers, topic, 300, 5)) == 300)
        os.kill(shipper.pid, signal.SIGKILL)
        wait_for(lambda: shipper.restarts == 1, timeout_s=10)
        for e in second:
            client.send(topic, e.decision_id, e)
        assert client.flush(15)
        client.close()
        arrived = read_topic(broker.bootstrap_servers, topic, 1001, timeout_s=2)
    assert dropped == []
    assert by_id(arrived) == by_id(first + second)


def test_workers_hold_events_until_the_shipper_is_up(shipping, broker, topic):
    config, path = shipping
    sent = decisions(500)
    client = ShipperClient(path, 10_000, 60)
    for e in sent:
        client.send(topic, e.decision_id, e)
    time.sleep(1.0)  # nobody listens yet
    assert client.outstanding == 500
    with ShipperProcess(config, path):
        assert client.flush(15)
        client.close()
        arrived = read_topic(broker.bootstrap_servers, topic, 501, timeout_s=2)
    assert by_id(arrived) == by_id(sent)


def test_half_a_frame_is_not_taken_and_a_bad_event_is_refused_alone(shipping, broker, topic):
    config, path = shipping
    good = decisions(3)
    bad = msgspec.structs.replace(good[1], probabilities=[1.5])  # not a probability
    refused = []
    producer = EventProducer(config.kafka, broker.bootstrap_servers, "test", 100)
    shipper = Shipper(path, producer, refused.append)
    thread = threading.Thread(target=shipper.run, daemon=True)
    thread.start()
    try:
        broken = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        broken.connect(path)
        whole = frame(topic, "x", events.encode(good[0]))
        broken.sendall(whole[: len(whole) - 5])  # a worker dying mid-write
        broken.close()
        client = ShipperClient(path, 100, 60)
        for e in (good[0], bad, good[2]):
            client.send(topic, e.decision_id, e)
        assert client.flush(10)
        client.close()
        arrived = by_id(read_topic(broker.bootstrap_servers, topic, 3, timeout_s=8))
    finally:
        shipper.stop()
        thread.join(15)
        producer.close()
    assert arrived == by_id([good[0], good[2]])
    assert refused == [topic]
    assert not os.path.exists(path)  # the socket goes with the shipper


def test_a_client_without_a_shipper_drops_and_counts_what_waits_too_long(tmp_path, topic):
    dropped = []
    client = ShipperClient(
        str(tmp_path / "nobody.sock"), 5, outage_s=0.3, on_drop=lambda t, r: dropped.append(r)
    )
    sent = decisions(8)
    accepted = [client.send(topic, e.decision_id, e) for e in sent]
    assert accepted == [True] * 5 + [False] * 3  # the queue holds five
    wait_for(lambda: client.outstanding == 0, timeout_s=5)
    client.close()
    assert sorted(dropped) == ["buffer_full"] * 3 + ["shipper_unavailable"] * 5
