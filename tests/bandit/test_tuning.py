"""A slot's tuning history: revisions only grow, a pin holds until unpinned, a rollback goes
to the settings before the running ones, and only learning settings can be tuned."""

import msgspec
import pytest

from bandit.contracts.events import RewardedEvent
from bandit.contracts.slots import SlotConfig, SlotKind
from bandit.learning.tuning import TuningError, TuningState, recent_window, tuned_slot, warm_start
from storage.model_store import ModelStore
from tests.replay.conftest import uniform_log

T = 1_700_000_000.0  # when each change is recorded


def test_revisions_grow_and_pins_hold_until_unpinned():
    state = TuningState(slot="artwork")
    assert (state.revision, state.overrides, state.active) == (0, [], None)
    state = state.record(["learning_rate=0.3"], "tuned", "tuner", at=T, gain=0.01, events=5000)
    state = state.record(["learning_rate=1.0"], "tuned", "tuner", at=T)
    assert (state.revision, state.overrides, state.pinned) == (2, ["learning_rate=1.0"], False)
    state = state.pin(1, at=T)
    assert (state.revision, state.overrides, state.pinned) == (3, ["learning_rate=0.3"], True)
    state = state.unpin(at=T)
    assert (state.revision, state.overrides, state.pinned) == (4, ["learning_rate=0.3"], False)
    with pytest.raises(TuningError, match="no revision 9"):
        state.pin(9, at=T)
    state = state.pin(0, at=T)  # revision 0: the configured settings, before any tuning
    assert (state.revision, state.overrides, state.pinned) == (5, [], True)


def test_a_rollback_goes_to_the_settings_before_and_pins_them():
    state = TuningState(slot="hero").record(["learning_rate=0.3"], "tuned", "tuner", at=T)
    state = state.record(["learning_rate=0.3"], "pinned", "admin", at=T)  # same settings, pinned
    back = state.rollback(at=T)
    assert (back.revision, back.overrides, back.pinned) == (3, [], True)
    with pytest.raises(TuningError, match="nothing to roll back"):
        TuningState(slot="hero").rollback(at=T)


def test_the_history_survives_the_store_and_keeps_its_newest_records(tmp_path):
    store = ModelStore(tmp_path)
    for n in range(60):
        store.update_tuning("rows", lambda s, n=n: s.record([f"learning_rate={n + 1}"], "tuned",
                                                            "tuner", at=T))  # fmt: skip
    state = store.tuning("rows")
    assert state.revision == 60 and len(state.history) == 50
    assert state.history[0].revision == 11
    (tmp_path / "rows" / "tuning.json").write_text("{broken")
    with pytest.raises(Exception, match="unreadable"):
        store.tuning("rows")


def test_only_learning_settings_can_be_tuned():
    slot = SlotConfig(kind=SlotKind.ARTWORK)
    assert tuned_slot("artwork", slot, ["learning_rate=0.3"]).learning_rate == 0.3
    assert tuned_slot("artwork", slot, []) is slot
    with pytest.raises(ValueError, match="tuning may set only"):
        tuned_slot("artwork", slot, ["holdout_fraction=0.5"])


def test_warm_start_learns_the_most_recent_treatment_events_once():
    log = uniform_log(SlotKind.ARTWORK, 300)
    log = [msgspec.structs.replace(e, group="control") if i % 3 == 0 else e
           for i, e in enumerate(log)]  # fmt: skip
    window = recent_window("artwork", list(reversed(log)), 150)
    assert len(window) == 150 and all(e.group == "treatment" for e in window)
    assert [e.ts for e in window] == sorted(e.ts for e in log if e.group == "treatment")[-150:]
    policy = warm_start(SlotConfig(kind=SlotKind.ARTWORK), window)
    try:
        assert policy.examples_learned == sum(e.impressed for e in window)
    finally:
        policy.close()
    assert isinstance(window[0], RewardedEvent)


def test_a_proposal_counts_rounds_won_in_a_row_and_a_revision_clears_it():
    state = TuningState(slot="hero").propose(["learning_rate=0.3"])
    state = state.propose(["learning_rate=0.3"])
    assert (state.proposal, state.proposal_rounds) == (["learning_rate=0.3"], 2)
    assert state.propose(["learning_rate=1.0"]).proposal_rounds == 1
    assert state.propose(None).proposal is None
    recorded = state.record(["learning_rate=0.3"], "tuned", "tuner", at=T)
    assert (recorded.proposal, recorded.proposal_rounds, recorded.revision) == (None, 0, 1)
