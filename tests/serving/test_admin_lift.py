"""`GET /v1/admin/lift`, behind the admin token: the report the learners' running sums give,
equal to the report over the rewarded topic, through a learner restart."""

import time

from bandit.contracts import events
from bandit.contracts.events import Candidate, Context, DecisionEvent, FeedbackEvent, PolicyRef
from bandit.measurement.lift import lift_report, to_dict
from bandit.measurement.tallies import tally
from kafkaio.produce import produce
from tests.helpers import read_all, running_learner, running_service, wait_for

TOKEN = "lift-token"
WINDOW = ("slots.artwork.attribution_window_s=0.5", "learner.allowed_lateness_s=0")


def page_events(start: int, count: int, t0: float):
    """Decisions of people u0..u149 (every tenth in control), each impressed; a third clicked."""
    decisions, feedback = [], []
    for n in range(start, start + count):
        decision_id, person = f"d{n}", n % 150
        decisions.append(DecisionEvent(
            decision_id=decision_id, ts=t0, slot="artwork", key="title:1",
            user_hash=f"u{person}", group="control" if person % 10 == 0 else "treatment",
            policy=PolicyRef(name="vw", version="untrained"),
            context=Context(user={"taste": "romance"}, request={"device": "tv"}),
            candidates=[Candidate(id=i, features={"tone": i}) for i in "abcd"],
            chosen=["a"], probabilities=[0.25], explored=False,
        ))  # fmt: skip
        feedback.append(FeedbackEvent(decision_id=decision_id, ts=t0, type="impression"))
        if (n * 7 + person) % 3 == 0:
            feedback.append(FeedbackEvent(decision_id=decision_id, ts=t0, type="click"))
    return decisions, feedback


def learn(config, start: int, count: int) -> None:
    """Run a learner until `count` more decisions, stamped now, are joined and learned."""
    topics, bootstrap = config.kafka.topics, config.kafka.bootstrap_servers
    with running_learner(config) as learner:
        decisions, feedback = page_events(start, count, time.time())
        # learned so far, the earlier runs' included: every decision of a treated person
        treated = sum(n % 150 % 10 != 0 for n in range(start + count))
        produce(bootstrap, topics.decisions, [(d.decision_id, events.encode(d)) for d in decisions])
        produce(bootstrap, topics.feedback, [(f.decision_id, events.encode(f)) for f in feedback])
        wait_for(lambda: learner.status().learned.get("artwork", 0) == treated, 60)
        wait_for(lambda: learner.status().open_decisions == 0, 60)


def test_admin_lift_answers_from_the_learners_sums_as_the_log_would(learner_config):
    config = learner_config("slots.artwork.holdout_fraction=0.1", *WINDOW)
    learn(config, 0, 600)
    learn(config, 600, 300)  # a second learner run continues the sums from the checkpoint
    rewarded = {
        e.decision_id: e
        for e in (
            events.decode(v, events.RewardedEvent)
            for v in read_all(config.kafka.bootstrap_servers, config.kafka.topics.rewarded)
        )
    }
    assert len(rewarded) == 900
    with running_service(config, environ={"ARTBANDIT_ADMIN_TOKEN": TOKEN}) as service:
        client = service.client()
        assert client.get("/v1/admin/lift")[0] == 401
        status, body = client.request(
            "GET", "/v1/admin/lift", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert status == 200, body
    assert body["events"] == 900 and body["partitions"] == 2 and body["as_of"] > time.time() - 300
    expected = to_dict(lift_report(tally(rewarded.values()), config))
    assert body["slots"] == expected["slots"]
    (slot,) = body["slots"]
    assert slot["control"]["decisions"] == 90 and slot["treatment"]["decisions"] == 810
    assert slot["expected_control_share"] == 0.1 and slot["control_share"] == 0.1
    assert slot["lift"]["low"] <= slot["lift"]["value"] <= slot["lift"]["high"]
    assert [gap["estimator"] for gap in slot["calibration"]] == ["ips", "snips"]
