"""Fuzzing the endpoints over real HTTP: no input may produce a 5xx."""

import itertools
import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import running_service

FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from storage.config_file import load_config

    config = load_config(
        overrides=[
            f'model_store.path="{tmp_path_factory.mktemp("models")}"',
            'kafka.bootstrap_servers="127.0.0.1:9"',  # nothing listens: decisions are dropped
            "serving.log_buffer_events=1000000",
        ],
        environ={},
    )
    with running_service(config, environ={"ARTBANDIT_ADMIN_TOKEN": "t"}) as running:
        yield running


def _operations(document):
    schema = schemathesis.openapi.from_dict(document)
    return [result.ok() for result in schema.get_all_operations()]


def test_schemathesis_cases_from_the_live_openapi_never_get_a_5xx(service):
    """Valid (positive) and schema-violating (negative) cases for every operation."""
    _, document = service.client().get("/openapi.json")
    operations = _operations(document)
    assert {op.path for op in operations} >= {"/v1/decide", "/v1/feedback", "/v1/admin/promote"}
    for operation, mode in itertools.product(operations, schemathesis.GenerationMode):
        if mode is schemathesis.GenerationMode.NEGATIVE and not operation.body:
            continue  # nothing to violate in a GET without parameters

        @FUZZ
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case):
            response = case.call(base_url=service.url)
            assert response.status_code < 500, (case.path, case.body, response.text)

        check()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
slot_like = st.fixed_dictionaries(
    {"slot": st.sampled_from(["artwork", "hero", "rows", "x"]) | st.text(max_size=5),
     "candidates": st.lists(st.fixed_dictionaries({"id": st.text(max_size=5)}, optional={"features": json_values, "default": json_values}), max_size=5)},
    optional={"select": json_values, "key": json_values},
)  # fmt: skip
decide_like = st.fixed_dictionaries(
    {"slots": st.lists(slot_like, max_size=4)},
    optional={"user": json_values | st.fixed_dictionaries({"id": json_values, "features": json_values}), "context": json_values},
)  # fmt: skip


@FUZZ
@given(body=st.one_of(decide_like, json_values))
def test_hostile_decide_bodies_are_4xx_or_decided(service, body):
    status, answer = service.client().post("/v1/decide", raw=json.dumps(body).encode())
    assert status in (200, 400, 413), (status, answer)
    if status == 400:
        assert answer["error"]["field"]


@FUZZ
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_are_a_4xx(service, raw):
    client = service.client()
    for path in ("/v1/decide", "/v1/feedback", "/v1/admin/promote"):
        status, _ = client.post(path, raw=raw, headers={"Authorization": "Bearer t"})
        assert 400 <= status < 500 or (path == "/v1/decide" and status == 200)


# Deep and huge JSON: a body nested past the decoder's recursion limit, or just large, is
# the client's mistake, answered 400 (or 413 over the size limit) with the field named.
SLOT = {"slot": "artwork", "candidates": [{"id": "a"}, {"id": "b"}]}
DEEP_PLACES = {
    "/v1/decide": [
        ({"user": {"features": {"taste": "@"}}, "slots": [SLOT]}, "user.features.taste"),
        ({"context": {"device": "@"}, "slots": [SLOT]}, "context.device"),
        ({"slots": [{**SLOT, "candidates": [{"id": "a", "features": {"f": "@"}}]}]},
         "slots[0].candidates[0].features.f"),
        ({"slots": [{**SLOT, "key": "@"}]}, "slots[0].key"),
        ({"slots": "@"}, "slots"),
        ({"slots": [SLOT], "extra": "@"}, "extra"),
    ],
    "/v1/feedback": [
        ({"decision_id": "@", "ts": 1.0, "type": "click"}, "decision_id"),
        ({"decision_id": "d", "ts": 1.0, "type": "play", "value": "@"}, "value"),
        ({"decision_id": "d", "ts": 1.0, "type": "click", "extra": "@"}, "extra"),
    ],
    "/v1/admin/promote": [
        ({"slot": "@", "version": "v1"}, "slot"),
        ({"slot": "artwork", "version": "v1", "extra": "@"}, "extra"),
    ],
    "/v1/admin/tuning": [({"slot": "artwork", "action": "pin", "revision": "@"}, "revision")],
}  # fmt: skip
PLACES = [(path, body, field) for path, places in DEEP_PLACES.items()
          for body, field in places]  # fmt: skip


def _nested(depth: int, opener: str) -> str:
    closer = "]" if opener == "[" else "}"
    inner = '{"k":' if opener == "{" else "["
    return inner * depth + ("1" if opener == "{" else "") + closer * depth


@settings(max_examples=220, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)  # fmt: skip
@given(
    place=st.sampled_from(PLACES),
    depth=st.one_of(st.integers(1, 300), st.integers(300, 5_000), st.integers(5_000, 300_000)),
    opener=st.sampled_from(["[", "{"]),
    copies=st.integers(1, 3),
    at_top=st.booleans(),
)
def test_deep_or_huge_json_is_a_400_naming_the_field(service, place, depth, opener, copies,
                                                      at_top):  # fmt: skip
    path, template, field = place
    value = ",".join([_nested(depth, opener)] * copies)
    value = f"[{value}]" if copies > 1 else value
    body = _nested(depth, opener) if at_top else json.dumps(template).replace('"@"', value)
    client = service.client()  # a fresh connection: a 413 may close it
    status, answer = client.post(path, raw=body.encode(), headers={"Authorization": "Bearer t"})
    client.close()
    assert status in (400, 413), (status, answer)
    if status == 413:
        assert len(body) > 1_048_576 and answer["error"]["field"] == "(body)"
    elif not at_top:
        assert answer["error"]["field"] == field or answer["error"]["field"].startswith(field)
