"""Shadow (apprentice) mode: a candidate policy scores every treatment request beside the live
one, unseen, with its pmfs logged; the learner teaches it from the same stream; the lift
report estimates its gain; `/v1/admin/promote` makes it live only when that gain is
significant (or forced); replay values it from the logged pmfs exactly."""

import time

import numpy as np
import pytest

from bandit.config import shadow_key, shadow_slot
from bandit.contracts import events
from bandit.contracts.events import (
    Candidate,
    Context,
    DecisionEvent,
    PolicyRef,
    RewardedEvent,
    ShadowScore,
)
from bandit.contracts.slots import SlotKind
from bandit.learning.learner_core import Input, LearnerCore, Record, StepOutput
from bandit.measurement.tallies import PartitionTally, tally
from bandit.policies import build_policy
from replay.audit import audit
from replay.evaluate import evaluate
from replay.logs import ReplayLog
from replay.results import Settings
from replay.targets import parse_target
from storage.config_file import load_config
from storage.model_store import ModelStore
from tests.helpers import read_topic, running_learner, running_service, wait_for
from tests.learner.test_stream import decision, feedback
from tests.replay.conftest import uniform_log

SHADOW = 'slots.hero.shadow.settings=["learning_rate=0.5", "exploration.floor=0.2"]'
TOKEN = "shadow-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def hero_page(user: str) -> dict:
    return {"user": {"id": user, "features": {"taste": "drama"}},
            "slots": [{"slot": "hero", "candidates": [{"id": f"t{i}", "features": {"genre": f"g{i}"}}
                                                      for i in range(4)]}]}  # fmt: skip


def stored_shadow(config, store: ModelStore) -> str:
    """A trained version of the hero slot's shadow in the store; its version."""
    policy = build_policy(shadow_slot("hero", config.slots["hero"]))
    for event in uniform_log(SlotKind.HERO, 300, seed=3, slot="hero"):
        policy.learn(event)
    return store.save(shadow_key("hero"), policy).version


def test_the_shadow_scores_every_treatment_decision_unseen(make_config, broker):
    config = make_config(SHADOW, "slots.hero.holdout_fraction=0.0")
    store = ModelStore(config.model_store.path)
    version = stored_shadow(config, store)
    with running_service(config) as service:
        client = service.client()
        answers = [client.post("/v1/decide", hero_page(f"p{n}"))[1] for n in range(30)]
        logged = read_topic(broker.bootstrap_servers, config.kafka.topics.decisions, 30)
    shadow = store.load(shadow_key("hero"), version, shadow_slot("hero", config.slots["hero"]))
    assert all(a["decisions"][0]["policy_version"] == "untrained" for a in answers)  # live
    assert len(logged) == 30
    for event in logged:
        assert event.shadow is not None and event.shadow.policy.version == version
        expected = shadow.policy.action_probabilities(event.context, event.candidates)
        assert event.shadow.probabilities[0] == pytest.approx(expected.tolist(), abs=1e-6)
    # replay values the shadow from the logged pmfs: IPS is the mean of reward * weight
    rewarded = [RewardedEvent.from_decision(e, [float(e.chosen == ["t1"])], True, e.ts)
                for e in logged]  # fmt: skip
    settings = Settings(bootstrap=0, reward_model=False, estimators=("ips",))
    (slot,) = evaluate(ReplayLog(rewarded, "shadow"), [parse_target("shadow", config, 0)],
                       config, settings).slots  # fmt: skip
    expected_ips = np.mean([e.reward * e.shadow_weight() for e in rewarded])
    assert slot.targets[0].estimates[0].value == pytest.approx(expected_ips, abs=1e-12)


def _gain_tally(config, better: bool, progress: int) -> PartitionTally:
    """2,000 hero decisions of a live policy at 0.5/0.5 whose chosen "b" pays; the shadow
    puts 0.9 on "b" (a real gain) or 0.5 (none)."""
    rewarded = []
    for n in range(2000):
        chosen = "b" if n % 2 else "a"
        shadow = [[0.1, 0.9]] if better else [[0.5, 0.5]]
        event = DecisionEvent(
            decision_id=f"d{n}", ts=1.7e9 + n, slot="hero", key="", user_hash=f"u{n}",
            group="treatment", policy=PolicyRef(name="vw", version="v1"), context=Context(),
            candidates=[Candidate(id="a"), Candidate(id="b")], chosen=[chosen],
            probabilities=[0.5], explored=False,
            shadow=ShadowScore(policy=PolicyRef(name="vw", version="v1"), probabilities=shadow),
        )  # fmt: skip
        rewarded.append(RewardedEvent.from_decision(event, [float(chosen == "b")], True, 1.7e9))
    periods = tally(rewarded)["hero"]
    return PartitionTally("hero", 0, config.kafka.topics.decisions, progress, time.time(), periods)


def test_promotion_waits_for_a_significant_gain_then_serves_the_shadow(make_config, broker):
    config = make_config(SHADOW, "slots.hero.holdout_fraction=0.0")
    store = ModelStore(config.model_store.path)
    version = stored_shadow(config, store)
    promote = {"slot": "hero", "version": "shadow"}
    with running_service(config, environ={"ARTBANDIT_ADMIN_TOKEN": TOKEN}) as service:
        client = service.client()
        status, error = client.post("/v1/admin/promote", promote, headers=AUTH)
        assert status == 409 and error["error"]["reason"] == "not_significant"
        assert "no measured gain yet" in error["error"]["message"]
        assert store.write_tally(_gain_tally(config, better=False, progress=1))
        status, error = client.post("/v1/admin/promote", promote, headers=AUTH)
        assert status == 409 and "gain +0.0000" in error["error"]["message"], error
        assert store.write_tally(_gain_tally(config, better=True, progress=2))
        status, served = client.post("/v1/admin/promote", promote, headers=AUTH)
        assert status == 200 and served["version"] == f"shadow:{version}", served
        answers = [client.post("/v1/decide", hero_page(f"p{n}"))[1] for n in range(20)]
        assert {a["decisions"][0]["policy_version"] for a in answers} == {f"shadow:{version}"}
        logged = read_topic(broker.bootstrap_servers, config.kafka.topics.decisions, 20)
        status, served = client.post("/v1/admin/promote", {"slot": "hero", "version": "latest"},
                                     headers=AUTH)  # fmt: skip
        assert status == 200 and served["version"] == "untrained"
    assert all(e.shadow is None for e in logged)  # a promoted shadow serves, nothing to score
    # the audit re-scores the promoted decisions with the shadow's version: exact
    rewarded = [RewardedEvent.from_decision(e, [0.0], True, e.ts) for e in logged]
    (result,) = audit(rewarded, config, store)
    assert result.rescored_rounds == 20 and result.mismatches == 0, result.examples


def test_a_slot_without_a_shadow_cannot_promote_one(make_config):
    config = make_config('kafka.bootstrap_servers="127.0.0.1:9"')
    with running_service(config, environ={"ARTBANDIT_ADMIN_TOKEN": TOKEN}) as service:
        status, error = service.client().post(
            "/v1/admin/promote", {"slot": "hero", "version": "shadow", "force": True}, headers=AUTH
        )
    assert status == 409 and error["error"]["reason"] == "no_shadow"


def test_the_learner_teaches_the_shadow_from_the_same_events_and_checkpoints_it():
    config = load_config(environ={}, overrides=[SHADOW])
    core = LearnerCore(config, clock=time.time)
    core.assign(0, None)
    out, offsets = StepOutput(), {Input.DECISIONS: 0, Input.FEEDBACK: 0}
    for n in range(200):
        chosen = ("abcd"[n % 4],)
        items = [(Input.DECISIONS, decision(f"h{n}", n, "hero", chosen=chosen)),
                 (Input.FEEDBACK, feedback(f"h{n}", "impression", n + 1)),
                 (Input.FEEDBACK, feedback(f"h{n}", "click", n + 2))]  # fmt: skip
        for target, event in items[: 3 if n % 3 else 2]:
            core.process([Record(target, 0, offsets[target], None, events.encode(event))], out)
            offsets[target] += 1
    core.advance_idle(0, True, True, time.time() + 10**6, out)
    assert core.learned_here["hero"] == core.learned_here[shadow_key("hero")] == 200
    live, shadow = core.policies["hero"], core.policies[shadow_key("hero")]
    assert (
        shadow.slot.learning_rate == 0.5
        and live.slot.learning_rate == config.slots["hero"].learning_rate != 0.5
    )
    restored = LearnerCore.from_checkpoint(config, core.checkpoint(1, "m"), clock=time.time)
    again = restored.policies[shadow_key("hero")]
    probe = decision("probe", 0, "hero")
    scores = {name: p.action_probabilities(probe.context, probe.candidates)
              for name, p in (("live", live), ("shadow", shadow), ("again", again))}  # fmt: skip
    assert scores["again"] == pytest.approx(scores["shadow"]) and again.examples_learned == 200
    assert scores["shadow"] != pytest.approx(scores["live"])  # a model of its own
    core.close()
    restored.close()


def test_a_shadow_may_only_change_learning_settings():
    from bandit.config import ConfigError

    with pytest.raises(ConfigError, match=r"slots\.hero\.shadow\.settings"):
        load_config(environ={}, overrides=['slots.hero.shadow.settings=["holdout_fraction=0.5"]'])
    default_serves = load_config(environ={}, overrides=[
        'slots.hero.policy="default"', 'slots.hero.shadow.policy="vw"',
    ])  # fmt: skip
    assert shadow_slot("hero", default_serves.slots["hero"]).policy == "vw"


def test_a_shadow_no_better_than_the_live_policy_is_never_promoted_however_often_asked(
    learner_config,
):
    """Real broker, learner and HTTP: clicks do not depend on the artwork shown, so the
    shadow (other learning settings) is worth exactly what the live policy is. An operator
    asks to promote it after every checkpoint of the whole run; the gain's always-valid
    sequence never lets it through."""
    config = learner_config(
        'slots.artwork.shadow.settings=["exploration.floor=0.3", "learning_rate=0.5"]',
        "slots.artwork.holdout_fraction=0.0", "slots.artwork.attribution_window_s=2",
        "learner.allowed_lateness_s=0", "learner.checkpoint_interval_s=0.5",
    )  # fmt: skip
    rng = np.random.default_rng(11)
    promote = {"slot": "artwork", "version": "shadow"}
    rounds, pages = 10, 150
    measured = 0
    env = {"ARTBANDIT_ADMIN_TOKEN": TOKEN}
    with running_learner(config), running_service(config, environ=env) as service:
        client = service.client()
        for round_ in range(rounds):
            for n in range(pages):
                page = {"user": {"id": f"u{round_}-{n}"}, "slots": [{
                    "slot": "artwork", "key": "title:1",
                    "candidates": [{"id": f"a{i}", "features": {"tone": f"t{i}"}}
                                   for i in range(4)]}]}  # fmt: skip
                status, answer = client.post("/v1/decide", page)
                assert status == 200, answer
                decision_id = answer["decisions"][0]["decision_id"]
                feedback = [{"decision_id": decision_id, "ts": time.time(), "type": t}
                            for t in ["impression"] + ["click"] * (rng.random() < 0.3)]  # fmt: skip
                assert client.post("/v1/feedback", feedback)[0] == 202

            def checkpointed(joined: int = pages * (round_ + 1)) -> bool:
                """The round is joined, checkpointed and in the sums promotion reads."""
                answer = client.request("GET", "/v1/admin/lift", headers=AUTH)[1]
                return answer.get("events", 0) >= joined

            wait_for(checkpointed, 60)
            status, error = client.post("/v1/admin/promote", promote, headers=AUTH)
            assert status == 409 and error["error"]["reason"] == "not_significant", error
            measured += "always-valid [" in error["error"]["message"]
    assert measured == rounds  # a gain was measured every time, and refused every time
