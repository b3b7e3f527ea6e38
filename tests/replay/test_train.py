"""`artbandit train`: a slot's policy trained on a rewarded log, stored as its next version
and announced on the models topic; it chooses better than chance from its first page."""

import subprocess
import sys
import uuid
from pathlib import Path

import msgspec
import numpy as np

from bandit.contracts.slots import SlotConfig, SlotKind
from bandit.policies import build_policy
from replay.logs import write_log
from sim.synthetic import SyntheticWorld
from storage.config_file import load_config
from storage.model_store import ModelStore, parse_version_file
from tests.helpers import read_all
from tests.replay.conftest import uniform_log
from training.train import train

ARTBANDIT = str(Path(sys.executable).with_name("artbandit"))


def greedy_value(policy, seed: int = 99, rounds: int = 1500) -> float:
    """Mean expected reward of the policy's greedy choice in the log's world."""
    world = SyntheticWorld(SlotKind.ARTWORK, seed=1, candidates_per_round=5, catalogue_size=40)
    world.rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(rounds):
        round_ = world.draw()
        choice = policy.decide(round_.context, round_.candidates, greedy=True)
        total += world.expected_reward(round_, choice.chosen)
    return total / rounds


def test_a_policy_trained_on_a_log_is_stored_and_beats_chance(tmp_path):
    log = uniform_log(SlotKind.ARTWORK, 4000)
    log[:500] = [msgspec.structs.replace(e, group="control") for e in log[:500]]  # not learned
    config = load_config(overrides=[f'model_store.path="{tmp_path}/models"'], environ={})
    trained = train(config, "artwork", log + uniform_log(SlotKind.HERO, 50), quiet=True)
    assert (trained.events, trained.learned) == (4000, 3500)
    assert trained.version.version == "v00000001" and trained.version.examples_learned == 3500
    stored = ModelStore(config.model_store.path).load_latest("artwork").policy
    assert not stored.cold
    uniform = build_policy(SlotConfig(kind=SlotKind.ARTWORK, policy="uniform", seed=3))
    chance = np.mean([greedy_value(uniform, seed) for seed in (1, 2)])
    assert greedy_value(stored) > 1.5 * chance


def test_train_command_stores_and_announces_the_version(tmp_path, broker):
    log = tmp_path / "rewarded.jsonl"
    write_log(log, uniform_log(SlotKind.HERO, 600))
    models = f"models-{uuid.uuid4().hex[:8]}"
    settings = [
        f'--set=model_store.path="{tmp_path / "models"}"',
        f'--set=kafka.bootstrap_servers="{broker.bootstrap_servers}"',
        f'--set=kafka.topics.models="{models}"',
    ]
    done = subprocess.run([ARTBANDIT, "train", "--log", str(log), "--slot", "hero", "--quiet",
                           *settings], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "stored hero/v00000001" in done.stdout and "announced hero/v00000001" in done.stdout
    (announced,) = read_all(broker.bootstrap_servers, models, 2.0)
    info, _ = parse_version_file(announced, "announced")
    assert (info.slot, info.version, info.examples_learned) == ("hero", "v00000001", 600)


def test_train_refuses_what_it_cannot_train(tmp_path):
    log = tmp_path / "rewarded.jsonl"
    write_log(log, [msgspec.structs.replace(e, group="control")
                    for e in uniform_log(SlotKind.HERO, 30)])  # fmt: skip
    store = f'--set=model_store.path="{tmp_path / "models"}"'
    for slot, problem in [("banner", "not in the config"), ("artwork", "no events of slot"),
                          ("hero", "none of the 30 events")]:  # fmt: skip
        done = subprocess.run([ARTBANDIT, "train", "--log", str(log), "--slot", slot, "--quiet",
                               "--no-announce", store], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert done.returncode == 2 and problem in done.stderr, (slot, done.stderr)
    assert ModelStore(tmp_path / "models").versions("hero") == []
