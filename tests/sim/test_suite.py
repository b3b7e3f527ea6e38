"""The world suite spans what the quality issue asks of it, and its observable optimum is a
real optimum: no worse than chance, no better than the oracle that sees the hidden taste."""

import dataclasses

import numpy as np
import pytest

from bandit.contracts.slots import SlotKind
from sim.suite import HALVES, SUITE, SuiteWorld, play
from storage.config_file import load_config


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
    # the families the exploration issue added: low clicks over a large catalogue, tastes
    # that move on the same candidates, seasons, a good editorial default
    assert any(s.base_rate <= 0.02 and s.catalogue >= 300 for s in worlds)
    assert {"abrupt", "gradual"} & {s.change for s in worlds}
    assert any(s.change == "seasonal" for s in worlds) and any(s.editorial for s in worlds)


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
    spec = next(s for s in SUITE if s.change == "new")
    world = SuiteWorld(spec, horizon=1000)
    early = {c.id for t in range(400) for c in world.request(t).candidates}
    late = {c.id for t in range(600, 1000) for c in world.request(t).candidates}
    assert late - early, "new candidates arrive after the change"


@pytest.mark.parametrize("change", ["abrupt", "gradual", "seasonal"])
def test_tastes_that_move_keep_the_candidates_and_the_optimum_but_not_the_best_choice(change):
    """What people like moves to other styles: the same catalogue and an optimum as high as
    before, but the observable best candidate of a request is another one."""
    spec = dataclasses.replace(next(s for s in SUITE if s.change == change), change_at=2000)
    world = SuiteWorld(spec, horizon=40_000)
    moved = spec.span // 2 if change == "seasonal" else 2000 + spec.span  # fully moved there
    catalogue = {f"item{i}" for i in range(world.catalogue)}
    best_before, best_after = [], []
    for t in range(2000):
        for at, bests in ((t, best_before), (moved + t, best_after)):
            request = world.request(at)
            assert {c.id for c in request.candidates} <= catalogue
            bests.append(request.p_observable.max())
    assert np.mean(best_after) == pytest.approx(np.mean(best_before), rel=0.25)
    stale, now = world.effects[0]["user"], world._effects_at(moved)["user"]
    favourites_moved = np.argmax(stale, axis=1) != np.argmax(now, axis=1)
    assert favourites_moved.mean() >= 1 / 3  # a segment's favourite style is another one


def test_the_editorial_default_is_the_same_first_candidate_on_every_page():
    spec = next(s for s in SUITE if s.editorial)
    world = SuiteWorld(spec, horizon=1000)
    firsts = [world.request(t).candidates[0] for t in range(200)]
    assert len({c.id for c in firsts}) == 1 and all(c.default for c in firsts)


def test_a_run_records_when_the_detector_saw_the_change():
    # an abrupt change at 4,000 in a world of frequent clicks, watched by a short window
    spec = dataclasses.replace(
        next(s for s in SUITE if s.name == "hero-strong-device"), change="abrupt", change_at=4000
    )
    slot = load_config(
        None,
        ["slots.hero.seed=1", "slots.hero.change_detection.window=400"],
        environ={},
    ).slots["hero"]
    played = play(spec, 8000, slot)
    assert played.changes, "the detector never fired"
    assert all(4000 <= t < 8000 for t in played.changes), played.changes
