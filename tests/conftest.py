"""Real parts for tests: the embedded Kafka-protocol broker, started once per session."""

from __future__ import annotations

import uuid

import pytest

from bandit.config import Config, load_config
from bandit.embedded_broker import EmbeddedBroker


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
