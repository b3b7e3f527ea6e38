"""The broker dies mid-run: every request still succeeds, and dropped events are counted."""

from bandit.embedded_broker import EmbeddedBroker
from tests.helpers import metric_value, running_service, wait_for

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
