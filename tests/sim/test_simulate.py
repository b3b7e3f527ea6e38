"""`artbandit simulate` against a real service on loopback and the embedded broker."""

import re
import uuid

from artbandit.cli import main
from bandit.contracts import events
from storage.config_file import load_config
from tests.helpers import read_all, running_service


def test_simulate_drives_the_service_and_sends_the_feedback(broker, tmp_path, capsys):
    suffix = uuid.uuid4().hex[:8]
    sets = [
        f'kafka.bootstrap_servers="{broker.bootstrap_servers}"',
        f'kafka.topics.decisions="decisions-{suffix}"',
        f'kafka.topics.feedback="feedback-{suffix}"',
        f'model_store.path="{tmp_path / "models"}"',
    ]
    config = load_config(overrides=sets, environ={})
    with running_service(config) as service:
        args = ["simulate", "--url", service.url, "--duration", "3", "--rate", "20", "--quiet"]
        code = main([*args, *(arg for s in sets for arg in ("--set", s))])
    out = capsys.readouterr().out
    assert code == 0, out
    pages = int(re.search(r"([\d,]+) pages", out).group(1).replace(",", ""))
    sent = int(re.search(r"([\d,]+) feedback events sent", out).group(1).replace(",", ""))
    assert 40 <= pages <= 61  # 3 s at 20 pages/s
    feedback = [events.decode(v) for v in read_all(broker.bootstrap_servers, f"feedback-{suffix}")]
    assert len(feedback) == sent > pages  # an impression for the hero of every page, at least
    decisions = {
        events.decode(v).decision_id
        for v in read_all(broker.bootstrap_servers, f"decisions-{suffix}")
    }
    assert {f.decision_id for f in feedback} <= decisions  # feedback only for served decisions
    assert sum(f.type == "impression" and f.position is None for f in feedback) >= pages
    for words in ("treatment", "control", "oracle"):
        assert words in out
