"""Malformed Kafka messages, generated: the learner never crashes, and every bad message
becomes exactly one dead letter (in the pure core, and through a real broker)."""

import copy
import json
import random
import time
from collections import Counter

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.contracts import events
from bandit.contracts.slots import SlotKind
from bandit.learning.learner_core import Input, LearnerCore, Record, StepOutput
from bandit.policies import build_policy
from kafkaio.produce import produce
from sim.synthetic import SyntheticWorld
from storage.config_file import load_config
from tests.helpers import read_all, running_learner, wait_for

CONFIG = load_config(environ={})
WORLD = SyntheticWorld(SlotKind.ARTWORK, seed=2)
_round = WORLD.draw()
DECISION = msgspec.to_builtins(
    WORLD.decision_event(_round, build_policy(CONFIG.slots["artwork"]).decide(
        _round.context, _round.candidates), "artwork")
)  # fmt: skip
FEEDBACK = msgspec.to_builtins(
    events.FeedbackEvent(decision_id=DECISION["decision_id"], ts=DECISION["ts"] + 1,
                         type="impression")
)  # fmt: skip
REQUIRED = {
    "decision": ["decision_id", "ts", "slot", "key", "user_hash", "group", "policy", "context",
                 "candidates", "chosen", "probabilities", "explored"],
    "feedback": ["decision_id", "ts", "type"],
}  # fmt: skip
WRONG_TYPES = {"ts": "yesterday", "chosen": 5, "probabilities": "high", "explored": "maybe",
               "candidates": {"id": "a"}, "type": 3, "decision_id": None}  # fmt: skip
CODES = {"malformed", "wrong_topic", "newer_schema", "unknown_slot"}


def _mutate(kind: str, which: str, choice: int, noise: bytes) -> tuple[Input, bytes]:
    """One message that breaks the contract in the way `kind` names."""
    base = copy.deepcopy(DECISION if which == "decision" else FEEDBACK)
    target = Input.DECISIONS if which == "decision" else Input.FEEDBACK
    if kind == "not_json":
        return target, b"\xff" + noise
    if kind == "not_object":
        return target, json.dumps([noise.hex(), choice]).encode()
    if kind == "unknown_schema":
        base["schema"] = base["schema"].replace("/1", f"/{choice + 2}")
    elif kind == "missing_field":
        fields = REQUIRED[which]
        del base[fields[choice % len(fields)]]
    elif kind == "wrong_type":
        fields = [f for f in WRONG_TYPES if f in base]
        field = fields[choice % len(fields)]
        base[field] = WRONG_TYPES[field]
    elif kind == "bad_probability":
        base = copy.deepcopy(DECISION)
        target = Input.DECISIONS
        base["probabilities"] = [[0.0, 1.5, -0.2][choice % 3]]
    elif kind == "unknown_choice":
        base = copy.deepcopy(DECISION)
        target = Input.DECISIONS
        base["chosen"] = ["not-a-candidate"]
    elif kind == "wrong_topic":
        target = Input.FEEDBACK if which == "decision" else Input.DECISIONS
    elif kind == "unknown_slot":
        base = copy.deepcopy(DECISION)
        target = Input.DECISIONS
        base["slot"] = f"banner-{choice}"
    elif kind == "too_deep":  # past the decoder's recursion limit, in a field it would skip
        depth = 2_000 + choice * 4_000
        body = json.dumps(base).encode()
        return target, body[:-1] + b', "extra": ' + b"[" * depth + b"]" * depth + b"}"
    elif kind == "huge":  # a bad value whose dead letter, JSON-escaped, would be 4x as long
        base["decision_id"] = '"' * (20_000 * (choice + 1))
    return target, json.dumps(base).encode()


# (an extra field is no fault: readers accept fields of newer writers, tests/bandit/test_events.py)
KINDS = ["not_json", "not_object", "unknown_schema", "missing_field", "wrong_type",
         "bad_probability", "unknown_choice", "wrong_topic", "unknown_slot", "too_deep",
         "huge"]  # fmt: skip
bad_message = st.builds(
    _mutate,
    st.sampled_from(KINDS),
    st.sampled_from(["decision", "feedback"]),
    st.integers(0, 50),
    st.binary(max_size=64),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(bad_message, min_size=1, max_size=30))
def test_every_bad_message_is_one_dead_letter_and_nothing_else(messages):
    core = LearnerCore(CONFIG, clock=time.time)
    core.assign(0, None)
    out = StepOutput()
    records = [Record(target, 0, offset, b"k", value)
               for offset, (target, value) in enumerate(messages)]  # fmt: skip
    core.process(records, out)
    assert len(out.dead_letters) == len(messages)
    assert {d.code for d in out.dead_letters} <= CODES
    # a message that did not decode is named by its offset; one the join refused, by its id
    named = [d.offset for d in out.dead_letters if d.offset is not None]
    assert len(named) == len(set(named)) == sum(d.code != "unknown_slot" for d in out.dead_letters)
    assert out.rewarded == [] and core.open_decisions == 0
    for dead in out.dead_letters:  # a dead letter fits where its message did
        assert len(events.encode(dead)) <= 7 * events.MAX_DEAD_PAYLOAD + 4_000
        assert dead.payload_bytes is None or dead.payload_bytes > events.MAX_DEAD_PAYLOAD
    core.close()


def test_bad_messages_through_the_broker_all_reach_the_dead_letter_topic(learner_config):
    config = learner_config()
    rng = random.Random(5)
    messages = [
        _mutate(rng.choice(KINDS), rng.choice(["decision", "feedback"]), rng.randrange(50),
                rng.randbytes(rng.randrange(40)))
        for _ in range(300)
    ]  # fmt: skip
    topics = config.kafka.topics
    by_input = Counter(target for target, _ in messages)
    with running_learner(config) as learner:
        for target, topic in (
            (Input.DECISIONS, topics.decisions),
            (Input.FEEDBACK, topics.feedback),
        ):
            produce(config.kafka.bootstrap_servers, topic,
                    [(f"bad-{i}", value) for i, (t, value) in enumerate(messages) if t is target])  # fmt: skip
        wait_for(lambda: learner.status().consumed == len(messages), 60)
    dead = [events.decode(v, events.DeadLetterEvent)
            for v in read_all(config.kafka.bootstrap_servers, topics.deadletter)]  # fmt: skip
    assert len(dead) == len(messages) == sum(by_input.values())
    assert {d.code for d in dead} <= CODES
    arrived = Counter(d.topic for d in dead)  # each on the topic it came from
    assert arrived == {topics.decisions: by_input[Input.DECISIONS],
                       topics.feedback: by_input[Input.FEEDBACK]}  # fmt: skip
