"""Real parts for tests: the embedded Kafka-protocol broker, started once per session (per
pytest-xdist worker); and the fault suite's table, printed at the end of the run."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest

from bandit.config import Config
from kafkaio.embedded_broker import EmbeddedBroker
from storage.config_file import load_config
from tests.faults.harness import ROWS, FaultRow, table


def pytest_sessionfinish(session):
    output = getattr(session.config, "workeroutput", None)
    if output is not None:  # an xdist worker: its fault rows go to the controller
        output["fault_rows"] = [dataclasses.asdict(row) for row in ROWS]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    ROWS.extend(FaultRow(**row) for row in getattr(node, "workeroutput", {}).get("fault_rows", []))


def pytest_terminal_summary(terminalreporter):
    if not ROWS:
        return
    lines = table(sorted(ROWS, key=lambda row: row.fault))
    terminalreporter.write_sep("=", "fault suite")
    for line in lines:
        terminalreporter.write_line(line)
    out = Path("var/faults/table.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def broker():
    """One embedded broker on a free loopback port for the whole session; always stopped."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def topic() -> str:
    """A fresh topic name per test, so tests never read each other's messages."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def default_config() -> Config:
    return load_config(environ={})


def learner_settings(root: Path, bootstrap_servers: str, *extra: str) -> list[str]:
    """`--set` overrides for a learner on `bootstrap_servers` with its own topics, group, store
    and checkpoints under `root`; windows short enough to close within a test's stream."""
    suffix = uuid.uuid4().hex[:8]
    topics = ("decisions", "feedback", "rewarded", "models", "deadletter")
    return [
        f'kafka.bootstrap_servers="{bootstrap_servers}"',
        *(f'kafka.topics.{t}="{t}-{suffix}"' for t in topics),
        f'model_store.path="{root / suffix / "models"}"',
        f'learner.checkpoint_dir="{root / suffix / "checkpoints"}"',
        f'learner.group_id="learner-{suffix}"',
        "learner.metrics_port=0",
        "learner.partitions=2",
        "learner.checkpoint_interval_s=0.5",
        "learner.publish_interval_s=0",
        *(f"slots.{s}.attribution_window_s=60" for s in ("artwork", "hero", "rows")),
        "learner.allowed_lateness_s=10",
        # The group drops a killed member after 2 s (6 s by default): tests that restart
        # learners wait less for the rejoin.
        "kafka.consumer.session_timeout_ms=2000",
        "kafka.consumer.heartbeat_interval_ms=400",
        *extra,
    ]


@pytest.fixture
def learner_overrides(tmp_path, broker):
    """`learner_settings` on the session broker, under this test's tmp_path."""

    def make(*extra: str) -> list[str]:
        return learner_settings(tmp_path, broker.bootstrap_servers, *extra)

    return make


@pytest.fixture
def learner_config(learner_overrides):
    def make(*extra: str) -> Config:
        return load_config(overrides=learner_overrides(*extra), environ={})

    return make
