"""One of two serving replicas is killed (SIGKILL, workers and all) under load behind a
round-robin client that retries on the other: no page fails, and no decision answered is
logged twice. What the killed replica had not yet handed to Kafka is lost, and counted."""

import time
import uuid

import pytest

from bandit.contracts import events
from kafkaio.topics import ensure_topics
from storage.config_file import load_config
from tests.faults.harness import ROWS, FaultRow, PageLoad, ServeProcess
from tests.helpers import read_all


@pytest.mark.slow
def test_a_replica_killed_under_load_fails_no_page_and_logs_nothing_twice(broker):
    overrides = [f'kafka.bootstrap_servers="{broker.bootstrap_servers}"',
                 f'kafka.topics.decisions="decisions-{uuid.uuid4().hex[:8]}"']  # fmt: skip
    config = load_config(overrides=overrides, environ={})
    ensure_topics(config, broker.bootstrap_servers)
    doomed, survivor = ServeProcess(overrides, workers=1), ServeProcess(overrides, workers=1)
    try:
        with PageLoad([doomed.port, survivor.port], threads=4, rate=20.0) as load:
            time.sleep(4)
            killed_at = time.monotonic()
            doomed.kill()
            time.sleep(4)
        survivor.stop()  # flushes its log
    finally:
        doomed.stop()
        survivor.stop()
    returned = load.decision_ids()
    logged = [
        events.decode(v, events.DecisionEvent).decision_id
        for v in read_all(broker.bootstrap_servers, config.kafka.topics.decisions)
    ]
    duplicated = len(logged) - len(set(logged))
    lost = len(set(returned) - set(logged))
    never_answered = len(set(logged) - set(returned))  # the killed replica's last requests
    around_kill = load.between(killed_at - 1.0, killed_at + 1.0)
    recovery_s = max(a.latency_s for a in around_kill)

    assert load.failed == 0 and load.failovers >= 1
    assert duplicated == 0 and len(returned) == len(set(returned))
    # lost: at most what the killed replica answered in its last second (its unsent buffer)
    assert lost <= 3 * len(load.between(killed_at - 1.0, killed_at)) / 2
    assert never_answered <= 3 * 4  # at most one page in flight per client thread
    ROWS.append(
        FaultRow(
            "serving replica SIGKILL (1 of 2)",
            f"80 pages/s round-robin ({len(load.answers)} pages)",
            load.failed,
            lost,
            duplicated,
            recovery_s,
            f"{load.failovers} requests retried on the other replica; lost = the killed "
            f"replica's unsent buffer; {never_answered} logged but never answered",
        )
    )
