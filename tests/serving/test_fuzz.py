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
