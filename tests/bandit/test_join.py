"""The reward join: scripted cases for each outcome, and properties over arrival orders."""

import contextlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.contracts.events import (
    Candidate,
    Context,
    DecisionEvent,
    FeedbackEvent,
    Outcomes,
    PolicyRef,
)
from bandit.learning import join as join_module
from bandit.learning.join import JoinResult, RewardJoin, _Open, outcomes_of, rewards_of
from bandit.learning.segments import MemorySegments
from storage.config_file import load_config

CONFIG = load_config(
    overrides=["slots.rows.reward.max=1.5", "slots.artwork.reward.watch_minute=0.1"], environ={}
)
SLOTS = CONFIG.slots  # windows of 1800 s; click 0.5, play 1.0, capped at max
WINDOW = 1800.0
LATENESS = 60.0
AFTER_ALL = 10_000.0


def decision(
    decision_id: str, ts: float = 0.0, slot: str = "artwork", chosen=("a",)
) -> DecisionEvent:
    ids = ["a", "b", "c", "d"]
    return DecisionEvent(
        decision_id=decision_id, ts=ts, slot=slot, key="k", user_hash="h", group="treatment",
        policy=PolicyRef(name="vw", version="v1"), context=Context(),
        candidates=[Candidate(id=i) for i in ids], chosen=list(chosen),
        probabilities=[0.5] * len(chosen), explored=False,
    )  # fmt: skip


def feedback(
    decision_id: str, kind: str, ts: float = 1.0, position=None, value=None
) -> FeedbackEvent:
    return FeedbackEvent(decision_id=decision_id, ts=ts, type=kind, position=position, value=value)


def run(events, join: RewardJoin | None = None, close: bool = True) -> JoinResult:
    """Feed `events` in order; with `close`, then move time past every window."""
    join = join or RewardJoin(SLOTS, LATENESS)
    total = JoinResult()
    for event in events:
        if isinstance(event, DecisionEvent):
            total.extend(join.add_decision(event))
        else:
            total.extend(join.add_feedback(event))
    if close:
        total.extend(join.advance(AFTER_ALL))
        while join.behind:  # more were due than one call closes
            total.extend(join.advance(AFTER_ALL))
    return total


def test_impressed_and_clicked_decision_is_rewarded_when_its_window_closes():
    join = RewardJoin(SLOTS, LATENESS)
    join.add_decision(decision("d1"))
    join.add_feedback(feedback("d1", "impression"))
    assert join.add_feedback(feedback("d1", "click", ts=2)).rewarded == []  # window still open
    result = join.advance(WINDOW + LATENESS)
    assert [(r.decision_id, r.rewards, r.reward, r.impressed) for r in result.rewarded] == [
        ("d1", [0.5], 0.5, True)
    ]
    assert result.rewarded[0].joined_at == WINDOW + LATENESS  # the window closing time
    assert join.open_decisions == 0


def test_never_impressed_decision_is_not_a_training_example():
    result = run([decision("d1"), feedback("d1", "click")])
    assert result.rewarded == [] and [d.decision_id for d in result.not_impressed] == ["d1"]


def test_feedback_before_its_decision_is_held_not_lost():
    result = run(
        [feedback("d1", "impression", ts=5), feedback("d1", "play", ts=6), decision("d1", ts=4)]
    )
    assert [(r.decision_id, r.rewards) for r in result.rewarded] == [("d1", [1.0])]


def test_duplicate_feedback_counts_once():
    result = run([decision("d1"), feedback("d1", "impression"), feedback("d1", "click"),
                  feedback("d1", "click", ts=3), feedback("d1", "impression", ts=4)])  # fmt: skip
    assert result.rewarded[0].rewards == [0.5] and result.duplicates == 2


def test_duplicate_decision_counts_once():
    result = run([decision("d1"), decision("d1"), feedback("d1", "impression")])
    assert len(result.rewarded) == 1 and result.duplicates == 1


def test_feedback_after_the_window_is_a_late_dead_letter():
    join = RewardJoin(SLOTS, LATENESS)
    join.add_decision(decision("d1"))
    join.add_feedback(feedback("d1", "impression"))
    join.advance(WINDOW + LATENESS + 1)
    result = join.add_feedback(feedback("d1", "click", ts=WINDOW + LATENESS + 2))
    assert [(d.event.type, d.reason.split(":")[0]) for d in result.dead_letters] == [
        ("click", "late")
    ]


def test_feedback_for_a_decision_that_never_comes_is_a_dead_letter():
    result = run([feedback("ghost", "click", ts=1)])
    assert [(d.event.decision_id, d.reason) for d in result.dead_letters] == [
        ("ghost", "unknown decision")
    ]


def test_feedback_for_a_position_not_shown_is_a_dead_letter():
    result = run(
        [decision("r1", slot="rows", chosen=("a", "b")), feedback("r1", "impression", position=5)]
    )
    assert "position 5" in result.dead_letters[0].reason
    assert result.not_impressed[0].decision_id == "r1"


def test_decision_for_an_unknown_slot_is_a_dead_letter():
    result = run([decision("d1", slot="carousel")])
    assert result.dead_letters[0].reason == "unknown slot 'carousel'"


def test_rows_get_rewards_per_position_capped_at_the_slots_max():
    result = run([
        decision("r1", slot="rows", chosen=("a", "b", "c")),
        feedback("r1", "impression", position=0), feedback("r1", "impression", position=1),
        feedback("r1", "click", position=1), feedback("r1", "play", position=1),
        feedback("r1", "watch", position=1, value=30.0), feedback("r1", "click", position=2),
    ])  # fmt: skip
    assert result.rewarded[0].rewards == [0.0, 1.5, 0.5]  # 0.5 + 1.0 capped at 1.5
    assert result.rewarded[0].reward == 2.0
    # what the person did, uncapped and unweighted: the lift report's guardrails
    assert result.rewarded[0].outcomes == Outcomes(clicks=2.0, plays=1.0, watch_minutes=30.0)


def test_outcomes_count_a_cumulative_watch_report_once_per_position():
    progress = [feedback("d", "watch", position=0, value=v) for v in (3.0, 9.0, 6.0)]
    assert outcomes_of([*progress, feedback("d", "watch", position=1, value=2.0)]) == Outcomes(
        watch_minutes=11.0
    )


def test_watch_minutes_map_to_reward():
    assert rewards_of(SLOTS["artwork"], 1, [feedback("d", "watch", value=4.0)]) == [
        pytest.approx(0.4)
    ]


def test_a_decision_that_arrives_after_its_window_closes_at_once():
    join = RewardJoin(SLOTS, LATENESS)
    join.advance(AFTER_ALL)
    result = join.add_decision(decision("old", ts=0))
    assert [d.decision_id for d in result.not_impressed] == ["old"]


@st.composite
def streams(draw):
    """Decisions and feedback whose times all lie within the allowed lateness of each other,
    so every arrival order must give the same outcome."""
    count = draw(st.integers(1, 8))
    events = []
    for n in range(count):
        slot = draw(st.sampled_from(["artwork", "hero", "rows"]))
        chosen = ("a", "b", "c") if slot == "rows" else ("a",)
        ts = draw(st.floats(0, 20))
        events.append(decision(f"d{n}", ts=ts, slot=slot, chosen=chosen))
        for _ in range(draw(st.integers(0, 5))):
            kind = draw(st.sampled_from(["impression", "click", "play", "watch"]))
            position = draw(st.integers(0, len(chosen) - 1)) if slot == "rows" else None
            value = draw(st.floats(0, 100)) if kind == "watch" else None
            events.append(
                feedback(
                    f"d{n}", kind, ts=ts + draw(st.floats(0, 20)), position=position, value=value
                )
            )
    return events


def outcome(result):
    return (
        sorted((r.decision_id, tuple(r.rewards)) for r in result.rewarded),
        sorted(d.decision_id for d in result.not_impressed),
        sorted((d.event.decision_id, d.reason) for d in result.dead_letters),
    )


@settings(max_examples=200, deadline=None)
@given(streams(), st.randoms(use_true_random=False))
def test_arrival_order_does_not_change_the_outcome(events, random):
    shuffled = list(events)
    random.shuffle(shuffled)
    assert outcome(run(shuffled)) == outcome(run(events))


@settings(max_examples=200, deadline=None)
@given(streams(), st.randoms(use_true_random=False))
def test_replayed_duplicates_do_not_change_the_outcome(events, random):
    doubled = events + [random.choice(events) for _ in range(len(events))]
    random.shuffle(doubled)
    assert outcome(run(doubled)) == outcome(run(events))


@settings(max_examples=200, deadline=None)
@given(streams(), st.data())
def test_snapshot_and_restore_mid_stream_changes_nothing(events, data):
    """Restored at any cuts, each time from the last snapshot's segments alone."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(events)), max_size=4)))
    assert restored_at(events, cuts) == outcome(run(events))


def restored_at(events, cuts) -> tuple:
    """The outcome of `events` run through a join restored from its own snapshot at each
    of `cuts`, the parts merged."""
    segments = MemorySegments()
    join = RewardJoin(SLOTS, LATENESS, segments=segments)
    parts, start = [], 0
    for cut in [*cuts, len(events)]:
        parts.append(run(events[start:cut], join, close=cut == len(events)))
        if cut < len(events):
            join = RewardJoin.restore(SLOTS, join.snapshot(), LATENESS, segments=segments)
        start = cut
    return tuple(
        sorted(item for part in lists for item in part)
        for lists in zip(*map(outcome, parts), strict=True)
    )


@settings(max_examples=100, deadline=None)
@given(streams(), st.data())
def test_closing_a_few_windows_per_step_changes_nothing(events, data):
    """When event time jumps, windows close a batch per call; feedback for one that is due
    but not yet closed is late as if it had closed, and a restore mid-way closes the rest."""
    expected = outcome(run(events))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(events)), max_size=3)))
    with closing_batch(data.draw(st.integers(1, 3))):
        assert restored_at(events, cuts) == expected


@contextlib.contextmanager
def closing_batch(size: int):
    before = join_module.CLOSE_BATCH
    join_module.CLOSE_BATCH = size
    try:
        yield
    finally:
        join_module.CLOSE_BATCH = before


def test_a_snapshot_holds_no_decision_and_writes_only_what_changed():
    segments = MemorySegments()
    join = RewardJoin(SLOTS, LATENESS, segments=segments)
    for i in range(100):
        join.add_decision(decision(f"d{i}", ts=float(i)))
        join.add_feedback(feedback(f"d{i}", "impression", ts=float(i)))
    join.add_feedback(feedback("ghost", "click"))
    state = msgspec.msgpack.decode(join.snapshot())
    assert len(state["waiting"]) == 1 and len(state["segments"]) == 1
    assert len(msgspec.msgpack.encode(state)) < 300  # no decision in it
    first = sum(len(blob) for blob in segments.blobs.values())
    join.add_feedback(feedback("d5", "click", ts=200.0))
    join.snapshot()
    second = sum(len(blob) for blob in segments.blobs.values()) - first
    assert len(segments.blobs) == 2 and second < first / 20  # one decision rewritten


def test_segments_are_retired_once_all_they_hold_is_forgotten():
    segments = MemorySegments()
    join = RewardJoin(SLOTS, LATENESS, segments=segments)
    join.add_decision(decision("d1", ts=0.0))
    join.snapshot()
    join.add_decision(decision("d2", ts=100.0))
    join.snapshot()
    assert len(segments.blobs) == 2
    join.advance(WINDOW + 2 * LATENESS + 1)  # d1 closed and forgotten, d2 still open
    join.snapshot()
    assert len(segments.blobs) == 1
    restored = RewardJoin.restore(SLOTS, join.snapshot(), LATENESS, segments=segments)
    assert restored.is_open("d2") and not restored.is_open("d1")


def test_a_join_checkpointed_for_months_holds_only_its_live_segments():
    """A learner checkpoints every partition's join every few seconds for as long as it
    runs: what a join keeps per segment goes with the segment, or its memory grows by a
    name per checkpoint (before: 454,000 bytes more after 6,000 more checkpoints)."""
    import tracemalloc

    join = RewardJoin(SLOTS, LATENESS, segments=MemorySegments())

    def checkpoints(start: int, count: int) -> None:
        for i in range(start, start + count):  # 10 s apart, as learner.checkpoint_interval_s
            join.add_decision(decision(f"d{i}", ts=10.0 * i))
            join.add_feedback(feedback(f"d{i}", "impression", ts=10.0 * i))  # time moves
            join.snapshot()
            join.refill()  # a learner's every step does

    checkpoints(0, 2_000)  # past the first windows: a steady state
    tracemalloc.start()
    try:
        checkpoints(2_000, 200)
        before = tracemalloc.get_traced_memory()[0]
        checkpoints(2_200, 6_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 150_000, f"{grown:,} bytes more after 6,000 more checkpoints"


def test_a_checkpoint_from_before_segments_is_read_and_then_written_as_segments():
    old = _LegacyState(
        watermark=5.0, decisions_time=5.0, feedback_time=5.0,
        open=[_Open(decision("d1", ts=5.0), 5.0 + WINDOW + LATENESS)], waiting=[],
        closed=[("d0", 60.0)], ignored=[],
    )  # fmt: skip
    segments = MemorySegments()
    join = RewardJoin.restore(SLOTS, msgspec.msgpack.encode(old), LATENESS, segments=segments)
    assert join.open_decisions == 1  # read on first use
    again = RewardJoin.restore(SLOTS, join.snapshot(), LATENESS, segments=segments)
    assert again.is_open("d1") and len(segments.blobs) == 1
    result = again.add_feedback(feedback("d0", "click", ts=6.0))
    assert [d.code for d in result.dead_letters] == ["late"]


class _LegacyState(msgspec.Struct):
    watermark: float
    decisions_time: float
    feedback_time: float
    open: list[_Open]
    waiting: list[FeedbackEvent]
    closed: list[tuple[str, float]]
    ignored: list[tuple[str, float]]


def test_watch_reports_are_cumulative_so_the_largest_counts():
    reports = [feedback("d", "watch", value=10.0), feedback("d", "watch", value=4.0)]
    assert rewards_of(SLOTS["artwork"], 1, reports) == [pytest.approx(1.0)]
    result = run([decision("d1"), feedback("d1", "impression"), feedback("d1", "watch", value=3.0),
                  feedback("d1", "watch", ts=2, value=7.0)])  # fmt: skip
    assert result.rewarded[0].rewards == [pytest.approx(0.7)] and result.duplicates == 0


def test_feedback_read_far_ahead_of_decisions_closes_nothing_early():
    """A backlog drains the small feedback messages faster than the large decisions: the
    watermark follows the slower input, so nothing is orphaned or closed too soon."""
    join = RewardJoin(SLOTS, LATENESS)
    total = JoinResult()
    for n in range(5):
        total.extend(join.add_feedback(feedback(f"d{n}", "impression", ts=n * 1000 + 1)))
    assert join.watermark < 0 and total.dead_letters == []
    for n in range(5):
        total.extend(join.add_decision(decision(f"d{n}", ts=n * 1000)))
    total.extend(join.advance(AFTER_ALL))
    assert sorted(r.decision_id for r in total.rewarded) == [f"d{n}" for n in range(5)]
    assert total.dead_letters == []


def test_decisions_read_ahead_of_feedback_do_not_make_it_late():
    join = RewardJoin(SLOTS, LATENESS)
    join.add_decision(decision("d0", ts=0))
    join.add_decision(decision("d1", ts=5 * WINDOW))  # the decisions input is far ahead
    result = join.add_feedback(feedback("d0", "impression", ts=1))
    assert result.dead_letters == [] and join.open_decisions == 2
    result = join.advance(AFTER_ALL)
    assert [r.decision_id for r in result.rewarded] == ["d0"]


def test_rewarded_events_are_stamped_with_their_windows_closing_time():
    result = run([decision("d1", ts=100), feedback("d1", "impression", ts=101)])
    assert result.rewarded[0].joined_at == 100 + WINDOW + LATENESS
