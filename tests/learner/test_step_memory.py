"""A step that closes thousands of windows (a learner catching up on a backlog, or event time
jumping after a quiet night) holds a chunk of them decoded at once, not all of them: decoded,
a decision is about ten times its encoding, and the allocator keeps a process's high-water
mark of small objects for as long as the process runs."""

import time
import tracemalloc

import msgspec
import pytest

from bandit.contracts.events import FeedbackEvent
from bandit.contracts.slots import SlotKind
from bandit.learning import join as join_module
from bandit.learning import learner_core
from bandit.learning.learner_core import Input, LearnerCore, Record, StepOutput
from bandit.policies import build_policy
from sim.synthetic import SyntheticWorld
from storage.config_file import load_config

CONFIG = load_config(environ={})
DECISIONS = 1_500  # one batch: fewer than join.CLOSE_BATCH


def _backlog() -> list[Record]:
    """Decisions with an impression each, all in one second: no window closes while read."""
    world = SyntheticWorld(SlotKind.ARTWORK, seed=3)
    policy = build_policy(CONFIG.slots["artwork"])
    records, start = [], time.time()
    for i in range(DECISIONS):
        round_ = world.draw()
        decision = world.decision_event(
            round_, policy.decide(round_.context, round_.candidates), "artwork"
        )
        decision = msgspec.structs.replace(decision, ts=start + i / DECISIONS)
        impression = FeedbackEvent(decision_id=decision.decision_id, ts=decision.ts + 0.1,
                                   type="impression")  # fmt: skip
        records.append(Record(Input.DECISIONS, 0, i, None, msgspec.json.encode(decision)))
        records.append(Record(Input.FEEDBACK, 0, i, None, msgspec.json.encode(impression)))
    return records


BACKLOG = _backlog()


def _close_all() -> tuple[int, list[bytes]]:
    """The peak of traced memory while one step closes every window, and what it wrote."""
    core = LearnerCore(CONFIG, clock=time.time)
    core.assign(0, None)
    core.process(BACKLOG, StepOutput())
    out = StepOutput()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        core.advance_idle(0, True, True, time.time() + 10**6, out)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
        core.close()
    return peak, sorted(event.value for event in out.rewarded)


def test_closing_a_backlog_holds_one_chunk_of_decoded_decisions(monkeypatch):
    chunked, written = _close_all()
    monkeypatch.setattr(join_module, "CLOSE_CHUNK", 10**9)
    monkeypatch.setattr(learner_core, "CLOSE_CHUNK", 10**9)
    whole, written_whole = _close_all()
    assert len(written) == DECISIONS
    # the same events, byte for byte: chunks change when they are learned, not what
    assert [msgspec.json.decode(v)["decision_id"] for v in written] == [
        msgspec.json.decode(v)["decision_id"] for v in written_whole
    ]
    # beside what it writes (encoded, about 1 KB an event), decoded objects: a chunk's, not all
    encoded = sum(len(value) for value in written)
    assert chunked - encoded < (whole - encoded) / 2, (chunked, whole, encoded)


@pytest.mark.parametrize("chunk", [1, 7])
def test_a_step_closes_its_batch_in_chunks_and_misses_none(monkeypatch, chunk):
    monkeypatch.setattr(join_module, "CLOSE_CHUNK", chunk)
    monkeypatch.setattr(learner_core, "CLOSE_CHUNK", chunk)
    core = LearnerCore(CONFIG, clock=time.time)
    core.assign(0, None)
    out = StepOutput()
    core.process(BACKLOG[:200], out)
    core.advance_idle(0, True, True, time.time() + 10**6, out)
    assert out.outcomes["rewarded"] == len(out.rewarded) == 100
    assert not core.behind and core.open_decisions == 0
    core.close()
