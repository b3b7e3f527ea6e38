"""The clients printed in docs/frontend.md run as printed against a running service, and
what they report reaches the feedback topic."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bandit.contracts import events
from tests.helpers import read_topic, running_service

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "frontend.md"


def example(language: str) -> str:
    """The fenced block that follows `<!-- example: language -->` in the guide."""
    text = GUIDE.read_text()
    found = re.search(rf"<!-- example: {language} -->\n```\w+\n(.*?)\n```", text, re.S)
    assert found, f"no {language} example in {GUIDE.name}"
    return found.group(1)


def _run(command: list[str], url: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ARTBANDIT_URL": url})  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_python_client_runs_as_printed(make_config, broker, tmp_path):
    config = make_config()
    script = tmp_path / "client.py"
    script.write_text(example("python"))
    with running_service(config) as service:
        printed = _run([sys.executable, str(script)], service.url)
    assert printed.strip() == "{'accepted': 4}"
    sent = read_topic(broker.bootstrap_servers, config.kafka.topics.feedback, 4)
    assert sorted(e.type for e in sent if isinstance(e, events.FeedbackEvent)) == [
        "click", "impression", "impression", "impression"]  # fmt: skip


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (.ci/run installs it)")
def test_the_javascript_client_runs_as_printed(make_config, broker, tmp_path):
    config = make_config()
    script = tmp_path / "client.mjs"
    script.write_text(example("javascript"))
    with running_service(config) as service:
        printed = _run(["node", str(script)], service.url)
    assert printed.strip() == "{ accepted: 3 }"
    sent = read_topic(broker.bootstrap_servers, config.kafka.topics.feedback, 3)
    assert [e.type for e in sent] == ["impression"] * 3
