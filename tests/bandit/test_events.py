import contextlib
import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.contracts import events
from bandit.contracts.events import (
    Candidate,
    Context,
    DecisionEvent,
    EventError,
    FeedbackEvent,
    PolicyRef,
    RewardedEvent,
)
from tests.strategies import features, names

REPO = Path(__file__).resolve().parents[2]

probabilities = st.floats(min_value=1e-6, max_value=1.0)
timestamps = st.floats(min_value=0, max_value=4e9, allow_nan=False)


@st.composite
def decisions(draw) -> DecisionEvent:
    ids = draw(st.lists(names, min_size=1, max_size=6, unique=True))
    candidates = [
        Candidate(id=i, features=draw(features), default=draw(st.booleans())) for i in ids
    ]
    chosen = draw(st.permutations(ids))[: draw(st.integers(1, len(ids)))]
    return DecisionEvent(
        decision_id=draw(names),
        ts=draw(timestamps),
        slot=draw(st.sampled_from(["artwork", "hero", "rows"])),
        key=draw(st.text(max_size=20)),
        user_hash=draw(st.none() | names),
        group=draw(st.sampled_from(["treatment", "control"])),
        policy=PolicyRef(name="p", version=draw(names)),
        context=Context(user=draw(features), request=draw(features)),
        candidates=candidates,
        chosen=chosen,
        probabilities=[draw(probabilities) for _ in chosen],
        explored=draw(st.booleans()),
    )


@st.composite
def rewarded(draw) -> RewardedEvent:
    decision = draw(decisions())
    rewards = [draw(st.floats(-10, 10)) for _ in decision.chosen]
    return RewardedEvent.from_decision(decision, rewards, draw(st.booleans()), draw(timestamps))


feedbacks = st.builds(
    FeedbackEvent,
    decision_id=names,
    ts=timestamps,
    type=st.sampled_from(["impression", "click", "play", "watch"]),
    position=st.none() | st.integers(0, 100),
    value=st.none() | st.floats(0, 1e6),
)
any_event = st.one_of(decisions(), rewarded(), feedbacks)


@given(any_event)
def test_decode_of_encode_is_identity(event):
    assert events.decode(events.encode(event)) == event
    assert events.decode(events.encode(event), type(event)) == event


@given(st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_input_is_an_event_error_never_a_crash(data):
    with contextlib.suppress(EventError):
        events.decode(data)


@given(decisions(), st.sampled_from(["decision_id", "ts", "chosen", "context", "policy"]))
def test_missing_field_is_named(decision, field):
    raw = json.loads(events.encode(decision))
    del raw[field]
    with pytest.raises(EventError, match=field):
        events.decode(json.dumps(raw))


def _decision_json(**changes) -> dict:
    raw = {
        "schema": "artbandit.decision/1",
        "decision_id": "d1",
        "ts": 1.0,
        "slot": "artwork",
        "key": "title:1",
        "user_hash": None,
        "group": "treatment",
        "policy": {"name": "artwork", "version": "v1"},
        "context": {"user": {}, "request": {}},
        "candidates": [{"id": "a"}, {"id": "b"}],
        "chosen": ["a"],
        "probabilities": [0.5],
        "explored": False,
    }
    raw.update(changes)
    return raw


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (json.dumps(_decision_json(ts="yesterday")), "ts: Expected `float`, got `str`"),
        (json.dumps(_decision_json(ts=float("nan"))), "not valid JSON"),
        (
            json.dumps(_decision_json()).replace('"ts": 1.0', '"ts": 1e999'),
            "ts: Number out of range",
        ),
        (
            json.dumps(_decision_json(decision_id="x" * 513)),
            "decision_id: Expected `str` of length <= 512",
        ),
        (
            json.dumps(_decision_json(chosen=["zzz"])),
            "chosen: every id must be one of the candidates",
        ),
        (
            json.dumps(_decision_json(probabilities=[0.0])),
            "probabilities[0]: Expected `float` > 0.0",
        ),
        (json.dumps(_decision_json(probabilities=[0.5, 0.5])), "one entry per chosen position"),
        (json.dumps(_decision_json(candidates=[{"id": "a"}, {"id": "a"}])), "ids must be unique"),
        (json.dumps(_decision_json(group="treatment-2")), "group: Invalid enum value"),
        (
            json.dumps(_decision_json(schema="artbandit.decision/2")),
            "schema: artbandit.decision/2 is a version this reader does not know",
        ),
        (json.dumps(_decision_json(schema="artbandit.decisions/1")), "schema: Invalid value"),
        (json.dumps(_decision_json(context={"user": {"k": [1]}})), "context.user[...]"),
    ],
)
def test_contract_violations_are_named(text, message):
    with pytest.raises(EventError) as caught:
        events.decode(text)
    assert message in str(caught.value)


def test_encode_refuses_what_decode_would_refuse():
    decision = events.decode(json.dumps(_decision_json()), DecisionEvent)
    with pytest.raises(EventError, match="probabilities"):
        events.encode(msgspec.structs.replace(decision, probabilities=[float("nan")]))
    with pytest.raises(EventError, match="ts"):
        events.encode(msgspec.structs.replace(decision, ts=float("inf")))


def test_rewarded_event_needs_one_reward_per_position():
    decision = events.decode(json.dumps(_decision_json()), DecisionEvent)
    event = RewardedEvent.from_decision(decision, [1.0], True, 2.0)
    raw = json.loads(events.encode(event))
    raw["rewards"] = [1.0, 0.0]
    with pytest.raises(EventError, match="one entry per chosen position"):
        events.decode(json.dumps(raw))


def _contract(schema, defs=None):
    """What a JSON Schema requires, apart from how msgspec lays it out or words its docs:
    every `$ref` inlined, titles and descriptions dropped."""
    defs = schema.get("$defs", {}) if defs is None else defs
    if isinstance(schema, list):
        return [_contract(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _contract(defs[schema["$ref"].removeprefix("#/$defs/")], defs)
    return {
        key: _contract(value, defs)
        for key, value in schema.items()
        if key not in ("$defs", "title", "description")
    }


def test_schema_contract_ignores_layout_and_docs():
    inline = {"type": "object", "properties": {"a": {"type": "integer", "title": "A"}}}
    by_ref = {
        "$ref": "#/$defs/T",
        "$defs": {
            "T": {"type": "object", "description": "d", "properties": {"a": {"$ref": "#/$defs/A"}}},
            "A": {"type": "integer"},
        },
    }
    assert _contract(inline) == _contract(by_ref)
    assert _contract(inline) != _contract({**inline, "required": ["a"]})


@pytest.mark.parametrize(
    "event_type", [DecisionEvent, FeedbackEvent, RewardedEvent, events.DeadLetterEvent]
)
def test_exported_json_schema_is_current(event_type):
    path = REPO / "configs" / "schemas" / events.schema_file_name(event_type)
    committed = json.loads(path.read_text())
    assert _contract(committed) == _contract(events.json_schema(event_type)), (
        "the event contract changed: run `python -m storage.schemas configs/schemas`, and bump "
        "the schema version unless the change is an added optional field"
    )


def test_a_tombstone_is_refused_like_any_bad_event():
    with pytest.raises(EventError, match="tombstone"):
        events.decode(None, DecisionEvent)


KNOWN_KEYS = {"schema", "id", "features", "default", "name", "version", "user", "request",
              "type", "position", "value", *_decision_json()}  # fmt: skip
NEWER_KEY = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
NEWER_VALUE = st.one_of(
    st.integers(),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
NEWER_FIELD = st.dictionaries(
    NEWER_KEY.filter(lambda k: k not in KNOWN_KEYS), NEWER_VALUE, min_size=1, max_size=3
)


@settings(max_examples=100, deadline=None)
@given(top=NEWER_FIELD, policy=NEWER_FIELD, context=NEWER_FIELD, candidate=NEWER_FIELD)
def test_an_older_reader_takes_a_newer_minor_writers_events(top, policy, context, candidate):
    """A writer that added fields at any level (the same schema version): this reader
    decodes its event to exactly what it would without them, and still checks the rest."""
    plain = _decision_json()
    newer = {
        **plain, **top,
        "policy": {**plain["policy"], **policy},
        "context": {**plain["context"], **context},
        "candidates": [{**plain["candidates"][0], **candidate}, plain["candidates"][1]],
    }  # fmt: skip
    assert events.decode(json.dumps(newer)) == events.decode(json.dumps(plain))
    with pytest.raises(EventError, match="chosen"):
        events.decode(json.dumps({**newer, "chosen": ["zzz"]}))


@settings(max_examples=60, deadline=None)
@given(depth=st.integers(1, 200_000), opener=st.sampled_from(["[", '{"k":']),
       field=st.sampled_from(["extra", "decision_id", "type"]))  # fmt: skip
def test_an_event_nested_deep_decodes_or_is_an_event_error_naming_the_field(depth, opener,
                                                                            field):  # fmt: skip
    """An unknown field is skipped while the decoder's recursion limit allows (it varies
    with the interpreter's); past it, or in a known field, the event is refused by name."""
    closer = "]" if opener == "[" else "}"
    value = opener * depth + ("1" if opener != "[" else "") + closer * depth
    body = {"schema": "artbandit.feedback/1", "decision_id": "d", "ts": 1.0, "type": "click"}
    data = json.dumps({**body, field: "@"}).replace('"@"', value).encode()
    try:
        events.decode(data)
    except EventError as exc:
        assert str(exc).startswith(field)
    else:
        assert field == "extra" and depth < 100_000
