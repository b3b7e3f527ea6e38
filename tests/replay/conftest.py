import msgspec
import pytest

from bandit.contracts.events import PolicyRef
from bandit.contracts.slots import SlotConfig, SlotKind
from bandit.policies import build_policy
from bandit.policies.baselines import DefaultPolicy
from sim.synthetic import SyntheticWorld, rewarded_log
from storage.config_file import load_config
from storage.model_store import ModelStore


def uniform_log(kind: SlotKind, count: int, seed: int = 1, slot: str | None = None):
    """A replay log of `count` rounds logged uniformly at random in a synthetic world."""
    world = SyntheticWorld(kind, seed=seed, candidates_per_round=5, catalogue_size=40)
    logging_policy = build_policy(SlotConfig(kind=kind, policy="uniform", seed=seed, select=3))
    return rewarded_log(world, logging_policy, slot or kind.value, count)


def logged_by_real_versions(tmp_path, slot: str, kind: SlotKind, count: int):
    """`count` decisions of each: the untrained policy, a stored trained version, and the
    control group's editorial default; with the config and store that hold the versions."""
    config = load_config(environ={}, overrides=[
        f'model_store.path="{tmp_path / "models"}"', "slots.rows.select=3",
    ])  # fmt: skip
    store = ModelStore(config.model_store.path)
    policy = build_policy(config.slots[slot])
    for event in uniform_log(kind, 300, seed=4, slot=slot):
        policy.learn(event)
    version = store.save(slot, policy).version
    world = SyntheticWorld(kind, seed=5, candidates_per_round=5, catalogue_size=40)
    log = []
    deciders = [
        (build_policy(config.slots[slot]), "untrained", "treatment"),
        (policy, version, "treatment"),
        (DefaultPolicy(config.slots[slot]), "editorial", "control"),
    ]
    for decider, name, group in deciders:
        for _ in range(count):
            round_ = world.draw()
            choice = decider.decide(round_.context, round_.candidates, 3 if kind.ranked else 1)
            event = world.rewarded_event(round_, choice, slot, group)
            log.append(msgspec.structs.replace(
                event, decision_id=f"{name}-{len(log)}", slot=slot,
                policy=PolicyRef(name=decider.type_name, version=name),
            ))  # fmt: skip
    return config, store, log, version


@pytest.fixture(scope="session")
def artwork_log():
    return uniform_log(SlotKind.ARTWORK, 3000)
