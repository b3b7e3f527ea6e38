"""The broker dies mid-run, or is not up yet: every request still succeeds; events wait for
it while they can, and those dropped are counted."""

import time

from kafkaio.embedded_broker import EmbeddedBroker, free_port
from tests.helpers import metric_value, read_topic, running_service, wait_for

HERO = {"user": {"id": "u1"}, "slots": [{"slot": "hero", "candidates": [{"id": "a"}, {"id": "b"}]}]}


def test_requests_succeed_and_drops_are_counted_when_the_broker_is_killed(make_config):
    broker = EmbeddedBroker().start()
    config = make_config(
        f'kafka.bootstrap_servers="{broker.bootstrap_servers}"', "serving.log_buffer_events=20"
    )
    try:
        with running_service(config) as service:
            client = service.client()
            for _ in range(10):
                assert client.post("/v1/decide", HERO)[0] == 200
            wait_for(
                lambda: metric_value(client.get("/metrics")[1], "artbandit_events_sent_total") == 10
            )
            broker.kill()
            statuses = [client.post("/v1/decide", HERO)[0] for _ in range(200)]
            assert statuses == [200] * 200
            exposition = client.get("/metrics")[1]
            dropped = metric_value(exposition, "artbandit_events_dropped_total")
            buffered = metric_value(exposition, "artbandit_events_buffered")
            # The buffer holds at most 20 unacknowledged events; everything else was dropped.
            assert buffered <= 20
            assert dropped >= 200 - 20
            assert (
                metric_value(exposition, "artbandit_events_dropped_total", reason="buffer_full")
                >= 1
            )
    finally:
        broker.stop()


def test_events_wait_for_a_broker_that_is_not_up_yet_and_none_is_dropped(make_config):
    port = free_port()
    config = make_config(f'kafka.bootstrap_servers="127.0.0.1:{port}"')
    broker = EmbeddedBroker(port=port)
    try:
        with running_service(config) as service:
            client = service.client()
            decided = [client.post("/v1/decide", HERO) for _ in range(20)]
            assert [status for status, _ in decided] == [200] * 20
            time.sleep(3)  # several connection attempts fail meanwhile
            exposition = client.get("/metrics")[1]
            assert metric_value(exposition, "artbandit_events_dropped_total") == 0
            assert metric_value(exposition, "artbandit_events_buffered") == 20
            broker.start()
            wait_for(lambda: metric_value(client.get("/metrics")[1],
                                          "artbandit_events_sent_total") == 20, timeout_s=30)  # fmt: skip
            ids = {answer["decisions"][0]["decision_id"] for _, answer in decided}
        logged = read_topic(broker.bootstrap_servers, config.kafka.topics.decisions, 20)
        assert {event.decision_id for event in logged} == ids
    finally:
        broker.stop()
