"""The world suite spans what the quality issue asks of it, and its observable optimum is a
real optimum: no worse than chance, no better than the oracle that sees the hidden taste."""

import numpy as np
import pytest

from bandit.slots import SlotKind
from sim.suite import HALVES, SUITE, SuiteWorld


def test_the_suite_spans_rates_sizes_signals_and_kinds():
    rates = [s.base_rate for s in SUITE]
    sizes = [s.candidates for s in SUITE]
    assert min(rates) <= 0.01 and max(rates) >= 0.4
    assert min(sizes) == 2 and max(sizes) >= 50
    assert {s.signal for s in SUITE} == {"user", "context", "popularity", "none"}
    assert len({s.seed for s in SUITE}) == len({s.name for s in SUITE}) == len(SUITE) >= 16


@pytest.mark.parametrize("half", sorted(HALVES))
def test_each_half_has_every_kind_and_every_difficulty(half):
    worlds = HALVES[half]
    assert len(worlds) >= 8
    assert {s.kind for s in worlds} == set(SlotKind)
    assert {"user", "context", "popularity"} <= {s.signal for s in worlds}
    assert any(s.drift for s in worlds) and any(s.delay for s in worlds)
    assert any(s.anonymous for s in worlds)
    assert any(not s.described for s in worlds)  # candidates known by id alone


@pytest.mark.parametrize("spec", SUITE, ids=lambda s: s.name)
def test_observable_optimum_lies_between_chance_and_the_oracle(spec):
    world = SuiteWorld(spec, horizon=4000)
    positions = len(world.examination())
    chance, observable, oracle = [], [], []
    rng = np.random.default_rng(0)
    for t in range(4000):
        request = world.request(t)
        chance.append(
            world.value(request, list(rng.permutation(len(request.candidates))[:positions]))
        )
        observable.append(world.value(request, world.observable_optimum(request)))
        best = list(np.argsort(-request.p_true)[:positions])
        oracle.append(world.value(request, best))
        assert np.all((request.p_observable > 0) & (request.p_observable < 1))
    assert np.mean(chance) <= np.mean(observable) <= np.mean(oracle) + 1e-12
    if spec.signal != "none":
        assert np.mean(observable) > 1.05 * np.mean(chance), "the signal must be worth learning"


def test_a_drifting_world_changes_its_catalogue_halfway():
    spec = next(s for s in SUITE if s.drift)
    world = SuiteWorld(spec, horizon=1000)
    early = {c.id for t in range(400) for c in world.request(t).candidates}
    late = {c.id for t in range(600, 1000) for c in world.request(t).candidates}
    assert late - early, "new candidates arrive after the change"
