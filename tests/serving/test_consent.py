"""Consent over real HTTP and the embedded broker: a person who does not consent to
personalization leaves no user hash and no user feature on any topic, whatever the slot
serves them, and the service counts those decisions."""

import msgspec
from kafka import KafkaConsumer

from serving.holdout import Holdout
from tests.helpers import metric_value, read_topic, running_service

USER_ID = "consent-test-person-31"
SECRET_TASTE = "taste-only-this-person-has"


def page(consent: bool) -> dict:
    return {
        "user": {"id": USER_ID, "features": {"taste": SECRET_TASTE, "age": 77}},
        "consent": {"personalization": consent},
        "context": {"device": "tv"},
        "slots": [
            {"slot": "artwork", "key": "title:1",
             "candidates": [{"id": f"art{a}"} for a in range(4)]},
            {"slot": "hero", "key": "hero", "candidates": [{"id": f"hero{h}"} for h in range(5)]},
            {"slot": "rows", "key": "home", "select": 3,
             "candidates": [{"id": f"row{r}"} for r in range(6)]},
        ],
    }  # fmt: skip


def raw_topic(bootstrap: str, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)  # fmt: skip
    try:
        return [message.value for message in consumer]
    finally:
        consumer.close()


def test_nothing_about_an_unconsenting_person_reaches_kafka(make_config, broker):
    # artwork and hero serve the editorial default unlogged (the default); rows runs its
    # policy on the request context alone
    config = make_config('slots.rows.unconsented="context"', "slots.rows.holdout_fraction=0.0")
    salts = config.serving
    user_hash = Holdout(salts.holdout_salt, salts.user_hash_salt).user_hash(USER_ID)
    with running_service(config) as service:
        client = service.client()
        answers = [client.post("/v1/decide", page(consent=False))[1] for _ in range(5)]
        _, consenting = client.post("/v1/decide", page(consent=True))  # the sentinel
        _, exposition = client.get("/metrics")
        logged = read_topic(broker.bootstrap_servers, config.kafka.topics.decisions, 5 + 3)
        raw = raw_topic(broker.bootstrap_servers, config.kafka.topics.decisions)
    for answer in answers:
        artwork, hero, rows = answer["decisions"]
        assert artwork["decision_id"] is None and artwork["group"] == "unpersonalized"
        assert artwork["chosen"] == ["art0"] and artwork["probabilities"] == [1.0]
        assert hero["decision_id"] is None and hero["policy_version"] == "editorial"
        assert rows["decision_id"] is not None and rows["group"] == "treatment"
    assert len(logged) == len(raw) == 8  # 5 rows decisions without consent, 3 with
    unconsented = {a["decisions"][2]["decision_id"] for a in answers}
    for event in logged:
        if event.decision_id in unconsented:
            assert event.user_hash is None and event.context.user == {}
        else:
            assert event.user_hash == user_hash and event.context.user["taste"] == SECRET_TASTE
    sentinel_ids = {d["decision_id"] for d in consenting["decisions"]}
    for value in raw:
        mine = any(i.encode() in value for i in sentinel_ids)
        assert (user_hash.encode() in value) == mine and (SECRET_TASTE.encode() in value) == mine
        assert USER_ID.encode() not in value
    count = "artbandit_unconsented_decisions_total"
    assert metric_value(exposition, count, slot="artwork", served="default") == 5
    assert metric_value(exposition, count, slot="hero", served="default") == 5
    assert metric_value(exposition, count, slot="rows", served="context") == 5
    assert metric_value(exposition, count, served="context", slot="hero") == 0


def test_consent_is_optional_and_strict(make_config):
    config = make_config('kafka.bootstrap_servers="127.0.0.1:9"')
    body = page(consent=True)
    with running_service(config) as service:
        client = service.client()
        del body["consent"]
        status, answer = client.post("/v1/decide", body)
        assert status == 200 and all(d["decision_id"] for d in answer["decisions"])
        body["consent"] = {"personalisation": False}  # a misspelt key must not pass as consent
        status, error = client.post("/v1/decide", body)
        assert status == 400 and error["error"]["field"] == "consent.personalisation"


def test_rotating_the_salts_by_config_reload_rehashes_and_reshuffles_the_holdout(
    make_config, broker
):
    """A reload with new salts: the same person gets a new user hash (old logs no longer link
    to new ones) and a new bucket, so about the holdout fraction of people change group;
    the unconsented counter survives the reload."""
    config = make_config("slots.hero.holdout_fraction=0.5")
    rotated = make_config(
        "slots.hero.holdout_fraction=0.5", 'serving.user_hash_salt="rotated-user"',
        'serving.holdout_salt="rotated-holdout"',
    )  # fmt: skip
    rotated = msgspec.structs.replace(
        rotated, kafka=msgspec.structs.replace(rotated.kafka, topics=config.kafka.topics)
    )
    environ = {"ARTBANDIT_ADMIN_TOKEN": "t0ken"}

    def hero(user: str, consent: bool = True) -> dict:
        return {"user": {"id": user}, "consent": {"personalization": consent},
                "slots": [{"slot": "hero", "candidates": [{"id": "a"}, {"id": "b"}]}]}  # fmt: skip

    people = [f"person-{n}" for n in range(400)]
    with running_service(config, environ=environ, config_loader=lambda: rotated) as service:
        client = service.client()
        before = {p: client.post("/v1/decide", hero(p))[1]["decisions"][0]["group"] for p in people}
        client.post("/v1/decide", hero("someone", consent=False))
        status, _ = client.post("/v1/admin/reload", headers={"Authorization": "Bearer t0ken"})
        assert status == 200
        after = {p: client.post("/v1/decide", hero(p))[1]["decisions"][0]["group"] for p in people}
        again = {p: client.post("/v1/decide", hero(p))[1]["decisions"][0]["group"] for p in people}
        client.post("/v1/decide", hero("someone", consent=False))
        _, exposition = client.get("/metrics")
        logged = read_topic(broker.bootstrap_servers, config.kafka.topics.decisions, 1200)
    assert after == again  # sticky under the new salt
    moved = sum(before[p] != after[p] for p in people)
    assert 150 <= moved <= 250, moved  # Binomial(400, 0.5): mean 200, sd 10
    hashes = {}
    for event in logged:
        hashes.setdefault(event.user_hash, 0)
        hashes[event.user_hash] += 1
    assert len(logged) == 1200 and len(hashes) == 800  # one hash per person per salt
    count = "artbandit_unconsented_decisions_total"
    assert metric_value(exposition, count, slot="hero", served="default") == 2
