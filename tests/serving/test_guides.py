"""The clients printed in docs/frontend.md run as printed against a running service, and
what they report reaches the feedback topic; so does every block of every doc marked
`<!-- runnable: against a running service -->`."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bandit.contracts import events
from tests.helpers import read_topic, running_service

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "frontend.md"
SERVICE_BLOCK = re.compile(r"<!-- runnable: against a running service -->\n```sh\n(.*?)\n```", re.S)


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


def service_blocks() -> list[tuple[str, str]]:
    """(doc, block) for every block marked runnable against a running service."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        found += [(doc.name, block) for block in SERVICE_BLOCK.findall(doc.read_text())]
    return found


def test_the_docs_have_service_blocks():
    assert {doc for doc, _ in service_blocks()} >= {"frontend.md", "operations.md"}


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl (.ci/run installs it)")
def test_every_service_block_runs_as_printed(make_config, broker):
    """Each block runs whole under `bash -e` against the real service on loopback, as the
    doc's `localhost:8080`, with `$TOKEN` the admin token; curl's `-f` turns an answer
    other than 2xx into a failure."""
    config = make_config()
    token = "guide-token"
    with running_service(config, environ={"ARTBANDIT_ADMIN_TOKEN": token}) as service:
        for doc, block in service_blocks():
            script = block.replace("localhost:8080", f"127.0.0.1:{service.port}")
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", script],
                                  capture_output=True, text=True, timeout=60,
                                  env={**os.environ, "TOKEN": token})  # fmt: skip
            assert done.returncode == 0, (doc, block, done.stdout, done.stderr)
            assert done.stdout.strip().startswith("{"), (doc, done.stdout)  # JSON answers
    decided = read_topic(broker.bootstrap_servers, config.kafka.topics.decisions, 2)
    assert {e.slot for e in decided if isinstance(e, events.DecisionEvent)} == {"artwork", "rows"}
