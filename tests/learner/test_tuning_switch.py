"""A tuning switch on the real stack (embedded broker, learner, HTTP admin API): the learner
switches a slot to the settings its tuning history asks for, warm-started on exactly the
slot's recent rewarded events, then learns every later event once; the switch survives a
restart, versions name their revision, and an operator's rollback switches back."""

import time

import pytest

from bandit.contracts import events
from bandit.learning.learner_core import LearnerCore
from kafkaio.produce import produce
from learner.checkpoint_store import CheckpointStore
from learner.loop import LearnerError
from storage.model_store import ModelStore
from tests.helpers import metric_value, read_all, running_learner, running_service, wait_for
from tests.serving.test_admin_lift import WINDOW, page_events

TOKEN = "tuning-token"
TUNED = "learning_rate=0.3"


def feed(config, learner, start: int, count: int, learned: int) -> None:
    """Produce `count` more pages' decisions and feedback; wait until the artwork policy has
    learned `learned` examples and no window is open."""
    topics, bootstrap = config.kafka.topics, config.kafka.bootstrap_servers
    decisions, feedback = page_events(start, count, time.time())
    produce(bootstrap, topics.decisions, [(d.decision_id, events.encode(d)) for d in decisions])
    produce(bootstrap, topics.feedback, [(f.decision_id, events.encode(f)) for f in feedback])
    wait_for(lambda: learner.core.policies["artwork"].examples_learned >= learned, 60)
    wait_for(lambda: learner.status().open_decisions == 0, 60)


def treated(start: int, stop: int) -> int:
    """Treatment decisions among pages start..stop (every tenth person is in control)."""
    return sum(n % 150 % 10 != 0 for n in range(start, stop))


def rewarded_treatment(config) -> int:
    values = read_all(config.kafka.bootstrap_servers, config.kafka.topics.rewarded)
    unique = {e.decision_id: e for e in (events.decode(v, events.RewardedEvent) for v in values)}
    return sum(e.group == "treatment" for e in unique.values())


def test_a_switch_learns_the_window_then_every_later_event_once(learner_config):
    config = learner_config("slots.artwork.holdout_fraction=0.1", "tuning.window_events=400",
                            *WINDOW)  # fmt: skip
    store = ModelStore(config.model_store.path)
    with running_learner(config) as learner:
        feed(config, learner, 0, 600, learned=540)
        assert learner.core.policies["artwork"].examples_learned == treated(0, 600) == 540
        # what `artbandit tune` records when a candidate wins
        store.update_tuning(
            "artwork", lambda s: s.record([TUNED], "tuned", "tuner", at=time.time())
        )
        wait_for(lambda: learner.core.tuned("artwork").revision == 1, 30)
        policy = learner.core.policies["artwork"]
        assert policy.slot.learning_rate == 0.3
        assert policy.examples_learned == 400  # the most recent 400 of the 540, once each
        feed(config, learner, 600, 300, learned=400 + treated(600, 900))
        assert learner.core.policies["artwork"].examples_learned == 400 + treated(600, 900)
        exposition = _metrics(learner)
        assert (
            metric_value(exposition, "artbandit_learner_tuning_switches_total", slot="artwork") == 1
        )
        assert metric_value(exposition, "artbandit_learner_tuning_revision", slot="artwork") == 1
        wait_for(lambda: store.versions("artwork"), 30)
    checkpoint = CheckpointStore(config.learner.checkpoint_dir, config.learner.member).latest()
    state = checkpoint.slots["artwork"]
    assert (state.tuning_revision, state.tuned) == (1, [TUNED])
    info, _ = store.read_info("artwork", store.versions("artwork")[-1])
    assert (info.tuning_revision, info.tuned) == (1, [TUNED])
    assert info.examples_learned == 400 + treated(600, 900)

    # A restart keeps the tuned policy (no second switch); the service shows the history and
    # an operator's rollback switches the learner back to the configured settings.
    with running_learner(config) as learner:
        assert learner.core.tuned("artwork").revision == 1
        feed(config, learner, 900, 150, learned=400 + treated(600, 1050))
        assert learner.core.policies["artwork"].examples_learned == 400 + treated(600, 1050)
        with running_service(config, environ={"ARTBANDIT_ADMIN_TOKEN": TOKEN}) as service:
            client = service.client()
            headers = {"Authorization": f"Bearer {TOKEN}"}
            status, body = client.request("GET", "/v1/admin/tuning", headers=headers)
            shown = body["artwork"]
            assert (shown["revision"], shown["overrides"], shown["pinned"]) == (1, [TUNED], False)
            assert shown["served_revision"] == 1 and status == 200
            status, body = client.post("/v1/admin/tuning", {"slot": "artwork", "action": "rollback"},
                                       headers=headers)  # fmt: skip
            assert status == 200, body
            assert (body["revision"], body["overrides"], body["pinned"]) == (2, [], True)
            status, body = client.post("/v1/admin/tuning", {"slot": "artwork", "action": "pin",
                                       "revision": 9}, headers=headers)  # fmt: skip
            assert status == 409 and body["error"]["reason"] == "no_such_revision"
            assert client.get("/v1/admin/tuning")[0] == 401
        wait_for(lambda: learner.core.tuned("artwork").revision == 2, 30)
        policy = learner.core.policies["artwork"]
        assert policy.slot.learning_rate == config.slots["artwork"].learning_rate
        assert policy.examples_learned == 400  # again the most recent 400
        assert rewarded_treatment(config) == treated(0, 1050)


def _metrics(learner) -> str:
    from prometheus_client import generate_latest

    return generate_latest(learner.metrics.registry).decode()


class Crash(Exception):
    """Raised by the first checkpoint after a switch: the switch never became durable."""


def test_a_crash_before_the_switch_is_checkpointed_switches_again_exactly(
    learner_config, monkeypatch
):
    config = learner_config("slots.artwork.holdout_fraction=0.1", "tuning.window_events=400",
                            *WINDOW)  # fmt: skip
    store = ModelStore(config.model_store.path)
    with running_learner(config) as learner:
        feed(config, learner, 0, 600, learned=540)
    switched = []
    original_switch, original_write = LearnerCore.switch, CheckpointStore.write

    def switch(self, *args):
        switched.append(True)
        original_switch(self, *args)

    def write(self, checkpoint):
        if switched:
            raise Crash("the disk went away")
        original_write(self, checkpoint)

    monkeypatch.setattr(LearnerCore, "switch", switch)
    monkeypatch.setattr(CheckpointStore, "write", write)
    store.update_tuning("artwork", lambda s: s.record([TUNED], "tuned", "tuner", at=time.time()))
    with pytest.raises(LearnerError, match="the disk went away"), running_learner(config):
        wait_for(lambda: switched, 30)
        time.sleep(2)  # the learner thread stops on the failed checkpoint
    monkeypatch.undo()
    latest = CheckpointStore(config.learner.checkpoint_dir, config.learner.member).latest()
    assert latest.slots["artwork"].tuning_revision == 0  # the switch was not recorded
    with running_learner(config) as learner:
        wait_for(lambda: learner.core.tuned("artwork").revision == 1, 30)
        assert learner.core.policies["artwork"].examples_learned == 400
        feed(config, learner, 600, 300, learned=400 + treated(600, 900))
        time.sleep(1)  # nothing more may come
        assert learner.core.policies["artwork"].examples_learned == 400 + treated(600, 900)
    assert rewarded_treatment(config) == treated(0, 900)
