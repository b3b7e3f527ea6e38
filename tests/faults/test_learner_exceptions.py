"""An exception anywhere in a learner's batch (decode, join, learn, produce, checkpoint) stops
it without recording the half-done batch; a restart then learns every example exactly once
and the rewarded topic holds every rewarded event (at least once). Real broker, real VW: the
fault is an exception raised by the N-th call of one step's real function."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bandit.config import Config
from bandit.contracts import events
from bandit.learning.join import RewardJoin
from bandit.learning.learner_core import LearnerCore
from bandit.measurement.tallies import decisions, merge
from learner.checkpoint_store import CheckpointStore
from learner.loop import KafkaLearner
from learner.writer import OutputWriter
from sim.synthetic import LoggedStream
from storage.config_file import load_config
from storage.model_store import ModelStore
from tests.conftest import learner_settings
from tests.faults.harness import ROWS, FaultRow, artwork_backlog, lineage_overrides
from tests.helpers import read_all, running_learner, wait_for

DECISIONS = 600
# Where a batch can fail, and how many calls of it the stream surely makes (600 decisions,
# about 800 feedback events, 550 rewarded) before its end.
STEPS = {
    "decode": ((events, "decode"), 1200),
    "join": ((RewardJoin, "add_feedback"), 700),
    # collecting a join's result learns its rewarded events (an exception from VW itself is
    # the example's own fault: it is dead-lettered as unlearnable, and learning goes on)
    "learn": ((LearnerCore, "_collect"), 1200),
    "produce": ((OutputWriter, "send"), 500),
    "checkpoint": ((CheckpointStore, "write"), 2),
}


@dataclass(frozen=True)
class Outcome:
    step: str
    nth: int
    learned: int
    rewarded: int
    counted: int  # decisions in the lift endpoint's sums


OUTCOMES: list[Outcome] = []


@dataclass(frozen=True)
class Backlog:
    root: Path
    base: list[str]
    stream: LoggedStream = field(repr=False)  # thousands of events: never in a report


class InjectedFault(Exception):
    """The exception a test raises inside the learner."""


@pytest.fixture(scope="module")
def backlog(tmp_path_factory, broker):
    """One artwork stream on shared input topics; each case learns it in a lineage of its own
    (group, checkpoints, output topics), so cases never see each other's state."""
    root = tmp_path_factory.mktemp("exceptions")
    base = learner_settings(root, broker.bootstrap_servers,
                            "learner.checkpoint_interval_s=0.2", "learner.max_poll_records=40")  # fmt: skip
    _, stream = artwork_backlog(base, seed=5, decisions=DECISIONS)
    yield Backlog(root, base, stream)
    ROWS.append(_row(stream))


def _lineage(root: Path, base: list[str], name: str) -> Config:
    return load_config(overrides=[*base, *lineage_overrides(root, name)], environ={})


def _fail_on_call(monkeypatch: pytest.MonkeyPatch, owner, name: str, nth: int) -> None:
    original = getattr(owner, name)
    calls = itertools.count(1)

    def failing(*args, **kwargs):
        if next(calls) == nth:
            raise InjectedFault(f"{name}, call {nth}")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)


def _run_until_it_fails(learner: KafkaLearner) -> BaseException | None:
    failure: list[BaseException] = []

    def run() -> None:
        try:
            learner.run(threading.Event())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name="faulty-learner", daemon=True)
    thread.start()
    thread.join(90)
    assert not thread.is_alive(), "the fault never fired"
    return failure[0] if failure else None


def _caused_by_injection(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, InjectedFault):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _fail_then_restart(backlog: Backlog, step: str, nth: int) -> Outcome:
    stream = backlog.stream
    config = _lineage(backlog.root, backlog.base, f"{step}-{nth}")
    (owner, name), _ = STEPS[step]
    with pytest.MonkeyPatch.context() as monkeypatch:
        _fail_on_call(monkeypatch, owner, name, nth)
        learner = KafkaLearner(config, config.kafka.bootstrap_servers, serve_metrics=False)
        failure = _run_until_it_fails(learner)
    assert _caused_by_injection(failure), f"{step}: the learner failed otherwise: {failure!r}"

    with running_learner(config, serve_metrics=False) as learner:

        def caught_up() -> bool:
            """Every learnable example learned (restored or anew), every window closed. Lag
            alone is no sign: it reads 0 before the first fetch tells a partition's end."""
            status = learner.status()
            learned = status.learned.get("artwork", 0)
            return learned >= stream.learnable and status.open_decisions == 0 and status.lag == 0

        wait_for(caught_up, timeout_s=90)
    values = read_all(config.kafka.bootstrap_servers, config.kafka.topics.rewarded, 1.0)
    rewarded = {events.decode(v, events.RewardedEvent).decision_id for v in values}
    checkpoint = CheckpointStore(config.learner.checkpoint_dir, config.learner.member).latest()
    sums = ModelStore(config.model_store.path).tallies("artwork")
    counted = decisions(merge({t.slot: t.periods} for t in sums))
    outcome = Outcome(step, nth, checkpoint.slots["artwork"].learned_here, len(rewarded), counted)
    OUTCOMES.append(outcome)
    return outcome


@pytest.mark.parametrize("step", sorted(STEPS))
def test_an_exception_in_each_step_loses_nothing_after_a_restart(backlog, step):
    stream = backlog.stream
    outcome = _fail_then_restart(backlog, step, max(1, STEPS[step][1] // 2))
    assert outcome.learned == stream.learnable
    assert outcome.rewarded == outcome.counted == stream.impressed


@settings(
    max_examples=3, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(step=st.sampled_from(sorted(STEPS)), fraction=st.floats(0.0, 1.0))
def test_an_exception_at_any_call_loses_nothing_after_a_restart(backlog, step, fraction):
    stream = backlog.stream
    nth = 1 + int(fraction * (STEPS[step][1] - 1))
    outcome = _fail_then_restart(backlog, step, nth)
    assert outcome.learned == stream.learnable, outcome
    assert outcome.rewarded == outcome.counted == stream.impressed, outcome


def _row(stream) -> FaultRow:
    lost = sum(max(stream.learnable - o.learned, 0) + max(stream.impressed - o.rewarded, 0)
               for o in OUTCOMES)  # fmt: skip
    duplicated = sum(max(o.learned - stream.learnable, 0) for o in OUTCOMES)
    steps = ", ".join(sorted({o.step for o in OUTCOMES}))
    return FaultRow(
        f"learner exception mid-batch x{len(OUTCOMES)} ({steps}), then restart",
        f"{DECISIONS:,} decisions, {stream.learnable:,} learnable",
        None,
        lost,
        duplicated,
        None,
        "every restart learned exactly the learnable examples; no rewarded event missing",
    )
