"""What the learner publishes: a policy that learned through the stream, and serving replicas
that pick its versions up from the models topic."""

import time

import msgspec
import numpy as np

from bandit.contracts.slots import SlotConfig, SlotKind
from bandit.policies import build_policy
from kafkaio.produce import produce_stream
from sim.synthetic import SyntheticWorld, logged_stream
from storage.model_store import ModelStore
from tests.helpers import running_learner, running_service, wait_for

DECISIONS = 8_000


def test_policy_learned_through_the_stream_approaches_the_oracle(learner_config, tmp_path):
    config = learner_config("slots.artwork.seed=5")
    world = SyntheticWorld(SlotKind.ARTWORK, seed=5)
    logging_policy = build_policy(SlotConfig(kind=SlotKind.ARTWORK, policy="uniform", seed=5))
    stream = logged_stream(world, logging_policy, "artwork", DECISIONS, time.time() - 7200, 0.05)
    produce_stream(config, stream.events)
    with running_learner(config) as learner:
        wait_for(lambda: learner.status().learned.get("artwork", 0) == stream.learnable, 120)
    store = ModelStore(config.model_store.path)
    policy = store.load_latest("artwork", config.slots["artwork"]).policy
    assert policy.examples_learned == stream.learnable
    rounds = [world.draw() for _ in range(2_000)]
    greedy = np.mean([
        world.expected_reward(r, policy.decide(r.context, r.candidates, greedy=True).chosen)
        for r in rounds
    ])  # fmt: skip
    oracle = np.mean([world.oracle_reward(r) for r in rounds])
    chance = np.mean([world.chance_reward(r) for r in rounds])
    assert chance <= 0.6 * oracle  # so reaching 85% of the oracle means it learned
    assert greedy >= 0.85 * oracle, (greedy, oracle, chance)


def test_serving_picks_up_a_published_version_from_the_models_topic(learner_config, tmp_path):
    config = learner_config()
    # The service has a store of its own: the version can only reach it through Kafka.
    # No holdout, so the decision below is the treatment's (a control one is "editorial").
    artwork = msgspec.structs.replace(config.slots["artwork"], holdout_fraction=0.0)
    serving_config = msgspec.structs.replace(
        config,
        model_store=msgspec.structs.replace(config.model_store, path=str(tmp_path / "replica")),
        serving=msgspec.structs.replace(config.serving, reload_interval_s=0.2),
        slots={**config.slots, "artwork": artwork},
    )
    world = SyntheticWorld(SlotKind.ARTWORK, seed=8)
    stream = logged_stream(
        world, build_policy(config.slots["artwork"]), "artwork", 500, time.time() - 7200
    )
    with running_service(serving_config) as service:
        client = service.client()
        assert client.get("/readyz")[1]["versions"]["artwork"] == "untrained"
        with running_learner(config):
            produce_stream(config, stream.events)
            wait_for(lambda: ModelStore(config.model_store.path).versions("artwork"), 60)
            wait_for(lambda: client.get("/readyz")[1]["versions"]["artwork"] != "untrained", 30)
        published = ModelStore(config.model_store.path).versions("artwork")  # all, now final
        served = client.get("/readyz")[1]["versions"]["artwork"]
        assert served in published
        status, body = client.post(
            "/v1/decide",
            {"slots": [{"slot": "artwork", "key": "t", "candidates": [{"id": "a"}, {"id": "b"}]}]},
        )
        assert status == 200 and body["decisions"][0]["policy_version"] in published
        metrics = client.get("/metrics")[1]
        assert 'artbandit_models_received_total{result="installed"}' in metrics


def test_the_learner_teaches_and_publishes_a_slots_shadow_through_the_stream(learner_config):
    """Through the embedded broker: the shadow learns every event the slot learns, and its
    versions land beside the slot's, under the shadow's own settings."""
    from bandit.config import shadow_key, shadow_slot

    config = learner_config('slots.artwork.shadow.settings=["learning_rate=0.4"]')
    world = SyntheticWorld(SlotKind.ARTWORK, seed=6)
    logging_policy = build_policy(SlotConfig(kind=SlotKind.ARTWORK, policy="uniform", seed=6))
    stream = logged_stream(world, logging_policy, "artwork", 1_500, time.time() - 7200, 0.05)
    produce_stream(config, stream.events)
    key = shadow_key("artwork")
    with running_learner(config) as learner:
        wait_for(lambda: learner.status().learned.get(key, 0) == stream.learnable, 120)
        assert learner.status().learned.get("artwork", 0) == stream.learnable
    store = ModelStore(config.model_store.path)
    wait_for(lambda: bool(store.versions(key)), 30)
    shadow = store.load_latest(key, shadow_slot("artwork", config.slots["artwork"]))
    assert shadow.policy.examples_learned == stream.learnable
    assert shadow.info.slot_config["learning_rate"] == 0.4
