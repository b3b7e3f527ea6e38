"""Learners that split the slots between them: together they produce exactly what one learner
of every slot does (each rewarded event once, each bad message one dead letter), and a group
whose members would own different slots is refused."""

import time
from collections import Counter

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.config import ConfigError
from bandit.contracts import events
from bandit.contracts.slots import SlotKind
from bandit.learning.checkpoint import CheckpointError
from bandit.learning.learner_core import Input, LearnerCore, Record, StepOutput
from bandit.policies import build_policy
from kafkaio.produce import produce, produce_stream
from sim.synthetic import SyntheticWorld, logged_stream
from storage.config_file import load_config
from storage.model_store import ModelStore
from tests.helpers import read_all, running_learner, wait_for
from tests.learner.test_stream import decision, feedback

FULL = load_config(environ={})
SPLIT = [
    load_config(overrides=['learner.slots=["artwork"]'], environ={}),
    load_config(overrides=['learner.slots=["hero", "rows"]'], environ={}),
]
SLOTS = {"artwork": ("a",), "hero": ("b",), "rows": ("c", "a", "d"), "banner": ("a",)}


def _item(kind: str, n: int, slot: str, fb: str, delay: int, position: int) -> tuple[Input, bytes]:
    """One message: a decision (slot `banner` is unknown), its feedback, or junk. Ids are
    unique per slot, as serving's random 128-bit ids are."""
    decision_id = f"{slot}-{n}"
    if kind == "decision":
        return Input.DECISIONS, events.encode(decision(decision_id, n, slot, chosen=SLOTS[slot]))
    if kind == "feedback":
        at = position if slot == "rows" else None
        return Input.FEEDBACK, events.encode(feedback(decision_id, fb, n + delay, at))
    return (Input.DECISIONS if n % 2 else Input.FEEDBACK), b'{"schema": "nonsense"'


messages = st.lists(
    st.builds(
        _item,
        st.sampled_from(["decision", "feedback", "feedback", "junk"]),
        st.integers(0, 12),  # few ids: feedback meets its decision, early, late or never
        st.sampled_from(list(SLOTS)),
        st.sampled_from(["impression", "click", "play"]),
        st.integers(-3, 2000),  # beyond the 1800 s window: late
        st.integers(0, 2),
    ),
    max_size=60,
)


def _run(config, items) -> tuple[dict, Counter, Counter, int]:
    core = LearnerCore(config, clock=time.time)
    core.assign(0, None)
    out = StepOutput()
    offsets = Counter()
    for target, value in items:
        core.process([Record(target, 0, offsets[target], None, value)], out)
        offsets[target] += 1
    core.advance_idle(0, True, True, time.time() + 10**6, out)  # close every window
    rewarded = {e.decision_id: msgspec.json.decode(e.value) for e in out.rewarded}
    dead = Counter((d.code, d.key, d.payload) for d in out.dead_letters)
    core.close()
    return rewarded, dead, Counter(core.learned_here), out.outcomes["not_owned"]


@settings(max_examples=150, deadline=None)
@given(messages)
def test_learners_splitting_the_slots_together_equal_one_learner_of_all(items):
    rewarded, dead, learned, not_owned = _run(FULL, items)
    parts = [_run(config, items) for config in SPLIT]
    (rewarded_a, dead_a, learned_a, _), (rewarded_b, dead_b, learned_b, _) = parts
    assert not_owned == 0
    assert rewarded_a.keys().isdisjoint(rewarded_b)
    assert {**rewarded_a, **rewarded_b} == rewarded
    assert {e["slot"] for e in rewarded_a.values()} <= {"artwork"}
    assert dead_a + dead_b == dead  # every bad message reported once, by one of them
    assert set(learned_a) == {"artwork"} and set(learned_b) == {"hero", "rows"}
    assert learned_a + learned_b == +learned


def test_learned_slots_must_be_configured():
    with pytest.raises(ConfigError, match=r"learner\.slots.*'banner'"):
        load_config(overrides=['learner.slots=["artwork", "banner"]'], environ={})


@pytest.mark.slow
def test_two_groups_each_learn_and_publish_only_their_slots(learner_overrides):
    base = learner_overrides()
    artwork_learner, hero_learner = (
        load_config(overrides=[*base, f'learner.slots=["{slot}"]',
                               f'learner.group_id="{slot}-{time.time_ns()}"',
                               f'learner.member="{slot}-learner"'], environ={})
        for slot in ("artwork", "hero")
    )  # fmt: skip
    streams = {
        slot: logged_stream(SyntheticWorld(SlotKind(slot), seed=4), build_policy(FULL.slots[slot]),
                            slot, 600, time.time() - 3600, 0.01)
        for slot in ("artwork", "hero")
    }  # fmt: skip
    config = artwork_learner
    for stream in streams.values():
        produce_stream(config, stream.events)
    produce(config.kafka.bootstrap_servers, config.kafka.topics.decisions,
            [(f"junk-{i}", b"not json") for i in range(5)])  # fmt: skip
    with running_learner(artwork_learner) as a, running_learner(hero_learner) as b:
        wait_for(lambda: a.status().learned == {"artwork": streams["artwork"].learnable}
                 and b.status().learned == {"hero": streams["hero"].learnable}, 90)  # fmt: skip
        assert set(a.core.policies) == {"artwork"} and set(b.core.policies) == {"hero"}
    topics = config.kafka.topics
    rewarded = Counter(
        events.decode(v, events.RewardedEvent).slot
        for v in read_all(config.kafka.bootstrap_servers, topics.rewarded)
    )
    assert rewarded == {slot: stream.impressed for slot, stream in streams.items()}
    dead = read_all(config.kafka.bootstrap_servers, topics.deadletter)
    assert len(dead) == 5  # reported by the artwork group (the first slot's owner) alone
    store = ModelStore(config.model_store.path)  # one store: each slot has one publisher
    assert store.versions("artwork") and store.versions("hero")
    assert store.versions("rows") == []


def test_members_of_one_group_must_own_the_same_slots(learner_overrides):
    base = learner_overrides()
    first = load_config(overrides=[*base, 'learner.slots=["artwork"]', 'learner.member="m1"'],
                        environ={})  # fmt: skip
    with running_learner(first):
        pass  # leaves a checkpoint that says what m1 owns
    second = load_config(overrides=[*base, 'learner.member="m2"'], environ={})
    with pytest.raises(CheckpointError, match="must own the same slots"), running_learner(second):
        pass
