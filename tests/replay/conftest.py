import pytest

from bandit.policies import build_policy
from bandit.slots import SlotConfig, SlotKind
from sim.synthetic import SyntheticWorld, rewarded_log


def uniform_log(kind: SlotKind, count: int, seed: int = 1, slot: str | None = None):
    """A replay log of `count` rounds logged uniformly at random in a synthetic world."""
    world = SyntheticWorld(kind, seed=seed, candidates_per_round=5, catalogue_size=40)
    logging_policy = build_policy(SlotConfig(kind=kind, policy="uniform", seed=seed, select=3))
    return rewarded_log(world, logging_policy, slot or kind.value, count)


@pytest.fixture(scope="session")
def artwork_log():
    return uniform_log(SlotKind.ARTWORK, 3000)
