"""The broker is down for 30 s under steady page traffic: every decide request succeeds, the
latency stays bounded, every decision is either delivered or counted as dropped, and logging
resumes by itself when the broker is back."""

import os
import signal
import time
import uuid

import pytest

from bandit.config import Config
from bandit.contracts import events
from kafkaio.embedded_broker import EmbeddedBroker, free_port
from kafkaio.topics import ensure_topics
from serving.event_producer import DROP_REASONS
from storage.config_file import load_config
from tests.faults.harness import ROWS, FaultRow, PageLoad, ServeProcess, p99_ms
from tests.helpers import read_all, shippers_of, wait_for

OUTAGE_S = 30.0
P99_BOUND_MS = 500.0


def restart_with_topics(port: int, config: Config, shippers: list[int]) -> EmbeddedBroker:
    """A broker on `port` again, holding the topics before any shipper reaches it.

    A real cluster keeps its topics across a restart; the embedded broker comes back empty,
    and it acknowledges (and loses) what is produced to a topic it does not know yet. So the
    shippers are paused while it starts and the topics are made again."""
    assert shippers
    for pid in shippers:
        os.kill(pid, signal.SIGSTOP)
    try:
        broker = EmbeddedBroker(port=port).start()
        ensure_topics(config, broker.bootstrap_servers)
        return broker
    finally:
        for pid in shippers:
            os.kill(pid, signal.SIGCONT)


@pytest.mark.slow
def test_decide_keeps_answering_through_a_broker_outage():
    port = free_port()
    broker = EmbeddedBroker(port=port).start()
    topic = f"decisions-{uuid.uuid4().hex[:8]}"
    overrides = [f'kafka.bootstrap_servers="{broker.bootstrap_servers}"',
                 f'kafka.topics.decisions="{topic}"']  # fmt: skip
    config = load_config(overrides=overrides, environ={})
    ensure_topics(config, broker.bootstrap_servers)
    serve = ServeProcess(overrides)
    sent = lambda: serve.metric("artbandit_events_sent_total", topic=topic)  # noqa: E731
    try:
        with PageLoad([serve.port], threads=4, rate=20.0) as load:
            wait_for(lambda: sent() > 0, timeout_s=30)
            time.sleep(3)
            before = load.between(0, time.monotonic())
            broker.kill()
            down_at = time.monotonic()
            time.sleep(1.0)  # no acknowledgement can arrive any more
            sent_while_down = sent()
            time.sleep(OUTAGE_S - 1.0)
            broker = restart_with_topics(port, config, shippers_of(serve.process.pid))
            up_at = time.monotonic()
            during = load.between(down_at, up_at)
            wait_for(lambda: sent() > sent_while_down, timeout_s=60, interval_s=0.1)
            recovery_s = time.monotonic() - up_at
            time.sleep(3)
        returned = load.decision_ids()
        wait_for(lambda: serve.metric("artbandit_events_buffered") == 0, timeout_s=60)
        delivered = sent()
        dropped = serve.metric("artbandit_events_dropped_total", topic=topic)
        reasons = {r: serve.metric("artbandit_events_dropped_total", topic=topic, reason=r)
                   for r in DROP_REASONS}  # fmt: skip
        on_new_broker = [
            events.decode(v, events.DecisionEvent).decision_id
            for v in read_all(broker.bootstrap_servers, topic, idle_s=3.0)
        ]
    finally:
        serve.stop()
        broker.stop()

    assert load.failed == 0 and len(during) >= OUTAGE_S * 4 * 20 * 0.8
    assert p99_ms(during) < P99_BOUND_MS, (p99_ms(before), p99_ms(during))
    # every decision answered was delivered once the broker was back (the buffer outlasts
    # the outage: serving.log_outage_s); had any been dropped, they would be counted
    assert delivered + dropped == len(returned) == len(set(returned))
    assert dropped == 0, reasons
    # What the new broker holds is what was acknowledged after the outage began, each once
    assert len(on_new_broker) == len(set(on_new_broker))
    assert len(on_new_broker) == delivered - sent_while_down
    assert set(on_new_broker) <= set(returned)
    ROWS.append(
        FaultRow(
            "broker down 30 s",
            f"80 pages/s ({len(during)} pages, {3 * len(during)} decisions)",
            load.failed,
            int(dropped),
            len(on_new_broker) - len(set(on_new_broker)),
            recovery_s,
            f"p99 {p99_ms(before):.0f} ms before, {p99_ms(during):.0f} ms during; "
            f"{len(on_new_broker)} decisions delivered after it",
        )
    )
