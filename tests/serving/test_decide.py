"""The decision service over real HTTP on loopback, logging to the real embedded broker."""

import http.client
import json

import pytest

from bandit.contracts.events import DecisionEvent, FeedbackEvent
from serving.holdout import Holdout
from tests.helpers import metric_value, read_topic, running_service

RAW_USER_ID = "user-4711@example.com"


def page(user_id: str | None = RAW_USER_ID) -> dict:
    user = {"features": {"taste": "romance", "age": 31}} | ({"id": user_id} if user_id else {})
    return {
        "user": user,
        "context": {"device": "tv", "hour": 21},
        "slots": [
            {"slot": "artwork", "key": f"title:{t}",
             "candidates": [{"id": f"t{t}-art{a}", "features": {"tone": f"tone{a}"}} for a in range(4)]}
            for t in range(3)
        ] + [
            {"slot": "hero", "key": "hero",
             "candidates": [{"id": f"hero{h}", "default": h == 2} for h in range(5)]},
            {"slot": "rows", "key": "home", "select": 4,
             "candidates": [{"id": f"row{r}", "features": {"genre": f"g{r % 3}"}} for r in range(8)]},
        ],
    }  # fmt: skip


def test_page_decisions_arrive_on_kafka_with_their_fields(make_config, broker):
    config = make_config()
    with running_service(config) as service:
        status, answer = service.client().post("/v1/decide", page())
        assert status == 200
        decisions = answer["decisions"]
        assert [d["slot"] for d in decisions] == ["artwork"] * 3 + ["hero", "rows"]
        logged = read_topic(broker.bootstrap_servers, config.kafka.topics.decisions, len(decisions))
    by_id = {event.decision_id: event for event in logged}
    assert set(by_id) == {d["decision_id"] for d in decisions}
    request = page()
    for decision, slot in zip(decisions, request["slots"], strict=True):
        event = by_id[decision["decision_id"]]
        assert isinstance(event, DecisionEvent)
        assert (
            event.chosen == decision["chosen"] and event.probabilities == decision["probabilities"]
        )
        assert event.group == decision["group"] == "treatment"
        assert event.policy.version == decision["policy_version"] == "untrained"
        assert event.explored == decision["explored"]
        assert event.key == slot["key"] and event.slot == slot["slot"]
        assert [c.id for c in event.candidates] == [c["id"] for c in slot["candidates"]]
        assert event.context.user == {"taste": "romance", "age": 31}
        assert event.context.request == {"device": "tv", "hour": 21}
        assert event.user_hash and event.user_hash != RAW_USER_ID
        # what the untrained policy gives the editorial default (first, unless marked): the
        # rest of epsilon (5%) and the exploration floor (5%), both spread evenly, plus its
        # share of them; rows log none
        expected = None if slot["slot"] == "rows" else cold_default(len(slot["candidates"]))
        assert event.default_probability == pytest.approx(expected)
    rows = decisions[-1]
    assert len(rows["chosen"]) == 4 == len(set(rows["chosen"]))
    # An untrained policy serves the editorial order with epsilon and the floor spread over
    # the rows left: the next editorial row has cold_default(left), every other row the rest.
    for position, probability in enumerate(rows["probabilities"]):
        left = 8 - position
        editorial = cold_default(left)
        others = (1 - editorial) / (left - 1)
        assert min(abs(probability - p) for p in (editorial, others)) < 1e-9


SPREAD = 1 - (1 - 0.05) * (1 - 0.05)  # epsilon, then the exploration floor, both spread evenly


def cold_default(candidates: int) -> float:
    """What an untrained policy gives the editorial default among `candidates`."""
    return 1 - SPREAD + SPREAD / candidates


def test_raw_user_ids_never_reach_kafka(make_config, broker):
    config = make_config()
    with running_service(config) as service:
        service.client().post("/v1/decide", page())
        service.state.producer.flush()
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(config.kafka.topics.decisions, bootstrap_servers=broker.bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)  # fmt: skip
    raw = [message.value for message in consumer]
    consumer.close()
    assert len(raw) == 5
    assert not any(RAW_USER_ID.encode() in value for value in raw)


def test_control_group_gets_the_editorial_default_with_probability_one(make_config, broker):
    config = make_config(*(f"slots.{s}.holdout_fraction=1.0" for s in ("artwork", "hero", "rows")))
    with running_service(config) as service:
        _, answer = service.client().post("/v1/decide", page())
        logged = read_topic(broker.bootstrap_servers, config.kafka.topics.decisions, 5)
    hero = answer["decisions"][3]
    assert hero["group"] == "control" and hero["chosen"] == ["hero2"]
    assert hero["probabilities"] == [1.0] and hero["policy_version"] == "editorial"
    assert answer["decisions"][4]["chosen"] == ["row0", "row1", "row2", "row3"]
    # control logs what the treatment policy would give the default: the calibration region
    (event,) = [e for e in logged if e.decision_id == hero["decision_id"]]
    assert event.default_probability == pytest.approx(cold_default(5))


def test_holdout_fraction_is_right_over_ten_thousand_users_and_sticky():
    """The split itself, as every replica computes it (a salted hash of the user id)."""
    holdout = Holdout("salt-a", "salt-b")
    groups = [holdout.group(holdout.bucket(f"user-{n}"), 0.2) for n in range(10_000)]
    control = groups.count("control")
    # Binomial(10,000, 0.2): sd = 40; 4 sd either side.
    assert 1840 <= control <= 2160, control
    again = Holdout("salt-a", "salt-b")  # another replica
    assert all(again.group(again.bucket(f"user-{n}"), 0.2) == groups[n] for n in range(10_000))
    resalted = Holdout("salt-c", "salt-b")
    moved = sum(resalted.group(resalted.bucket(f"user-{n}"), 0.2) != groups[n]
                for n in range(10_000))  # fmt: skip
    assert moved > 2000  # a new salt reshuffles: 2 * 0.2 * 0.8 of people change group


def test_the_service_splits_users_by_the_slots_holdout_fraction_and_keeps_them(make_config):
    """Through the service (1,500 users; the split's statistics are tested above)."""
    config = make_config("slots.hero.holdout_fraction=0.2")

    def body(user: str) -> dict:
        return {
            "user": {"id": user},
            "slots": [{"slot": "hero", "candidates": [{"id": "a"}, {"id": "b"}]}],
        }

    with running_service(config) as service:
        client = service.client()
        groups = {}
        for n in range(1_500):
            status, answer = client.post("/v1/decide", body(f"user-{n}"))
            assert status == 200
            groups[n] = answer["decisions"][0]["group"]
        again = {n: client.post("/v1/decide", body(f"user-{n}"))[1]["decisions"][0]["group"]
                 for n in range(0, 1_500, 10)}  # fmt: skip
    control = sum(group == "control" for group in groups.values())
    # Binomial(1,500, 0.2): sd = 15.5; 4 sd either side.
    assert 238 <= control <= 362, control
    assert all(groups[n] == group for n, group in again.items())


def test_feedback_is_forwarded_to_kafka(make_config, broker):
    config = make_config()
    batch = [
        {"schema": "artbandit.feedback/1", "decision_id": "d1", "ts": 100.0, "type": "impression", "position": 0},
        {"decision_id": "d1", "ts": 101.5, "type": "click", "position": 0},
        {"decision_id": "d2", "ts": 102.0, "type": "watch", "value": 12.5},
    ]  # fmt: skip
    with running_service(config) as service:
        client = service.client()
        assert client.post("/v1/feedback", batch) == (202, {"accepted": 3})
        assert client.post("/v1/feedback", {"decision_id": "d3", "ts": 1, "type": "play"})[0] == 202
        status, answer = client.post(
            "/v1/feedback", {"decision_id": "d3", "ts": 1, "type": "hover"}
        )
        assert status == 400 and answer["error"]["field"] == "type"
        forwarded = read_topic(broker.bootstrap_servers, config.kafka.topics.feedback, 4)
        _, exposition = client.get("/metrics")
    assert all(isinstance(e, FeedbackEvent) for e in forwarded)
    assert sorted((e.decision_id, e.type) for e in forwarded) == [
        ("d1", "click"), ("d1", "impression"), ("d2", "watch"), ("d3", "play")
    ]  # fmt: skip
    assert metric_value(exposition, "artbandit_feedback_forwarded_total", type="click") == 1


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, "(body)"),
        (b"[]", 400, "(body)"),
        (json.dumps({"slots": []}).encode(), 400, "slots"),
        (json.dumps({"slots": [{"slot": "carousel", "candidates": [{"id": "a"}]}]}).encode(), 400, "slots[0].slot"),
        (json.dumps({"slots": [{"slot": "hero", "candidates": []}]}).encode(), 400, "slots[0].candidates"),
        (json.dumps({"slots": [{"slot": "hero", "candidates": [{"id": ""}]}]}).encode(), 400, "slots[0].candidates[0].id"),
        (json.dumps({"slots": [{"slot": "hero", "candidates": [{"id": "a"}, {"id": "a"}]}]}).encode(), 400, "slots[0].candidates[1].id"),
        (json.dumps({"slots": [{"slot": "hero", "candidates": [{"id": f"c{i}"} for i in range(11)]}]}).encode(), 400, "slots[0].candidates"),
        (json.dumps({"slots": [{"slot": "hero", "candidates": [{"id": "a"}]}] * 4}).encode(), 400, "slots"),
        (json.dumps({"slots": [{"slot": "hero", "select": 2, "candidates": [{"id": "a"}, {"id": "b"}]}]}).encode(), 400, "slots[0].select"),
        (json.dumps({"user": {"id": 5}, "slots": [{"slot": "hero", "candidates": [{"id": "a"}]}]}).encode(), 400, "user.id"),
        (json.dumps({"context": {"x": None}, "slots": [{"slot": "hero", "candidates": [{"id": "a"}]}]}).encode(), 400, "context.x"),
        (json.dumps({"slots": [{"slot": "hero", "candidates": [{"id": "a"}]}], "extra": 1}).encode(), 400, "extra"),
        (b"x" * 5000, 413, "(body)"),
        (json.dumps({"user": {"id": "u", "features": {"ok": 1, "taste": None}}, "slots": [{"slot": "hero", "candidates": [{"id": "a"}]}]}).encode(), 400, "user.features.taste"),
        (json.dumps({"slots": [{"slot": "hero", "candidates": [{"id": "a", "features": {"tone": [1]}}]}]}).encode(), 400, "slots[0].candidates[0].features.tone"),
    ],
)  # fmt: skip
def test_bad_input_is_a_4xx_naming_the_field(make_config, body, status, field):
    config = make_config(
        "serving.max_candidates=10", "serving.max_slots=3", "serving.max_body_bytes=4096"
    )
    with running_service(config) as service:
        client = service.client()
        got_status, answer = client.post("/v1/decide", raw=body)
        assert (got_status, answer["error"]["field"]) == (status, field), answer
        _, exposition = client.get("/metrics")
    assert metric_value(exposition, "artbandit_request_errors_total") == 1


def test_unknown_paths_and_methods_answer_json(make_config):
    with running_service(make_config()) as service:
        client = service.client()
        assert client.get("/v1/nothing")[0] == 404
        status, answer = client.get("/v1/decide")
        assert status == 405 and answer["error"]["reason"] == "method_not_allowed"


def test_every_answer_carries_the_security_headers(make_config):
    with running_service(make_config()) as service:
        for method, path, body in [("POST", "/v1/decide", page()), ("GET", "/v1/nothing", None),
                                   ("GET", "/healthz", None)]:  # fmt: skip
            connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
            connection.request(method, path, body=json.dumps(body) if body else None)
            response = connection.getresponse()
            response.read()
            connection.close()
            assert response.getheader("X-Content-Type-Options") == "nosniff", path
            assert response.getheader("Cache-Control") == "no-store", path
            assert "default-src 'none'" in response.getheader("Content-Security-Policy"), path


def test_anonymous_visitors_are_decided_without_a_user_hash(make_config, broker):
    config = make_config()
    with running_service(config) as service:
        status, _ = service.client().post("/v1/decide", page(user_id=None))
        assert status == 200
        logged = read_topic(broker.bootstrap_servers, config.kafka.topics.decisions, 5)
    assert len(logged) == 5 and all(event.user_hash is None for event in logged)


def test_openapi_describes_the_running_limits(make_config):
    with running_service(make_config("serving.max_candidates=17")) as service:
        status, document = service.client().get("/openapi.json")
    assert status == 200
    slot = document["components"]["schemas"]["SlotRequest"]["properties"]
    assert slot["candidates"]["maxItems"] == 17
    assert slot["slot"]["enum"] == ["artwork", "hero", "rows"]
    assert set(document["paths"]) >= {"/v1/decide", "/v1/feedback", "/readyz", "/metrics"}
