import uuid

import pytest

from bandit.config import Config
from storage.config_file import load_config


@pytest.fixture
def make_config(tmp_path, broker):
    """A service config on the session broker, with its own model store and topics."""

    def make(*overrides: str) -> Config:
        suffix = uuid.uuid4().hex[:8]
        return load_config(
            overrides=[
                f'model_store.path="{tmp_path / "models"}"',
                f'kafka.bootstrap_servers="{broker.bootstrap_servers}"',
                f'kafka.topics.decisions="decisions-{suffix}"',
                f'kafka.topics.feedback="feedback-{suffix}"',
                "serving.reload_interval_s=0.2",
                *overrides,
            ],
            environ={},
        )

    return make
