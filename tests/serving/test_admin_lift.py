"""`GET /v1/admin/lift`: the lift report over the rewarded topic, behind the admin token."""

import uuid

import msgspec

from bandit import events
from bandit.slots import SlotKind
from kafkaio.produce import produce
from tests.helpers import running_service
from tests.replay.conftest import uniform_log

TOKEN = "lift-token"


def test_admin_lift_reports_each_slot_of_the_rewarded_topic(make_config, broker):
    rewarded = f"rewarded-{uuid.uuid4().hex[:8]}"
    log = uniform_log(SlotKind.ARTWORK, 600)
    # people u0..u199; every tenth person is in control
    log = [
        msgspec.structs.replace(e, user_hash=f"u{i % 200}",
                                group="control" if i % 200 % 10 == 0 else "treatment")
        for i, e in enumerate(log)
    ]  # fmt: skip
    produce(broker.bootstrap_servers, rewarded,
            [(e.decision_id, events.encode(e)) for e in log])  # fmt: skip
    config = make_config(
        f'kafka.topics.rewarded="{rewarded}"', "slots.artwork.holdout_fraction=0.1"
    )
    with running_service(config, environ={"ARTBANDIT_ADMIN_TOKEN": TOKEN}) as service:
        client = service.client()
        assert client.get("/v1/admin/lift")[0] == 401
        status, body = client.request(
            "GET", "/v1/admin/lift", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert status == 200, body
    assert body["log"] == rewarded and body["events"] == 600
    (slot,) = body["slots"]
    assert slot["slot"] == "artwork"
    assert slot["treatment"]["people"] == 180 and slot["control"]["people"] == 20
    assert slot["control"]["decisions"] == 60
    assert slot["expected_control_share"] == 0.1 and slot["control_share"] == 0.1
    assert slot["lift"]["low"] <= slot["lift"]["value"] <= slot["lift"]["high"]
