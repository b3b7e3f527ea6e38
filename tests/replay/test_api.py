"""The documented Python API: its examples (the module's and docs/data-science.md's) run as
printed, and `estimate_log` agrees with `artbandit replay` on the same log."""

import doctest
from pathlib import Path

import pytest

from bandit.contracts.slots import SlotKind
from replay import api
from replay.logs import write_log
from tests.replay.conftest import uniform_log

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "data-science.md"


def test_the_module_examples_run():
    failed, tried = doctest.testmod(api)
    assert tried >= 3 and failed == 0


def test_the_guide_examples_run():
    failed, tried = doctest.testfile(str(GUIDE), module_relative=False,
                                     optionflags=doctest.ELLIPSIS)  # fmt: skip
    assert tried >= 8 and failed == 0


def test_estimate_log_agrees_with_the_arrays_it_stands_for(tmp_path):
    log = tmp_path / "log.jsonl"
    events = uniform_log(SlotKind.ARTWORK, 600, slot="artwork")
    write_log(log, events)
    found = api.estimate_log(log, "uniform", estimators=("ips", "snips"))
    assert set(found) == {"artwork"}
    ips = found["artwork"]["ips"]
    # a uniform target on a uniformly logged log: every weight is 1, IPS is the mean reward
    rewards = [e.reward for e in events if e.group == "treatment"]
    assert ips.rounds == len(rewards)
    assert ips.value == pytest.approx(sum(rewards) / len(rewards))
    assert ips.low < ips.value < ips.high
    assert ips.effective_sample_size == pytest.approx(ips.rounds)
    with pytest.raises(Exception, match="nope"):
        api.estimate_log(log, "store:nope")
