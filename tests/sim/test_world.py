"""The simulated world: seeded, valid probabilities, an oracle no page beats, and a
configs/world.toml that documents exactly the built-in defaults."""

from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.config import ConfigError
from sim.page import PageChoice, PageMaker, expected_clicks, oracle, tiles
from sim.world import DAYPARTS, World, WorldParams, load_world

ROOT = Path(__file__).resolve().parents[2]
WORLD = World()


def test_configs_world_toml_documents_the_defaults():
    assert msgspec.to_builtins(load_world(ROOT / "configs" / "world.toml")) == msgspec.to_builtins(
        WorldParams()
    )


def test_a_seed_makes_the_same_world_and_another_seed_another():
    again = World(WorldParams())
    assert again.titles == WORLD.titles
    assert again.person(123).features == WORLD.person(123).features
    assert np.array_equal(again.person(123).mix, WORLD.person(123).mix)
    other = World(WorldParams(seed=8))
    assert other.titles != WORLD.titles


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("users=0", "world.users"),
        ("effects.row_bias=1.5", "world.effects.row_bias"),
        ("no_such_key=1", "world.no_such_key"),
        ("min_artworks=9", "world"),
    ],
)
def test_bad_world_parameters_name_the_key(override, key):
    with pytest.raises(ConfigError) as caught:
        load_world(None, [override])
    assert caught.value.key == key


def test_titles_have_three_to_six_artworks_with_the_key_art_in_their_genre():
    counts = {len(t.tones) for t in WORLD.titles}
    assert counts <= set(range(3, 7)) and len(counts) > 1
    assert all(t.tones[0] == t.genre for t in WORLD.titles)
    assert all(len(set(t.tones)) >= 3 for t in WORLD.titles)  # art for different tastes
    assert 10 <= len(WORLD.rows) <= 20


def test_watch_history_reveals_the_main_taste_for_most_people():
    people = [WORLD.person(i) for i in range(3000)]
    known = [p for p in people if "fav_genre" in p.features]
    right = np.mean([p.features["fav_genre"] == WORLD.tastes[p.taste] for p in known])
    assert 0.85 <= len(known) / len(people) <= 0.95  # new_user_share is 0.1
    assert right > 0.8
    newcomers = [p for p in people if "fav_genre" not in p.features]
    assert all("signup_genre" in p.features and not p.history for p in newcomers)


@settings(max_examples=200, deadline=None)
@given(
    person=st.integers(0, WORLD.params.users - 1),
    title=st.integers(0, len(WORLD.titles) - 1),
    artwork=st.integers(0, 5),
    device=st.sampled_from(WORLD.device_names),
    daypart=st.sampled_from(DAYPARTS),
    row=st.integers(-1, 5),
    column=st.integers(0, 5),
)
def test_probabilities_are_probabilities(person, title, artwork, device, daypart, row, column):
    who, what = WORLD.person(person), WORLD.titles[title]
    art = artwork % len(what.tones)
    assert 0.0 < WORLD.attractiveness(who, what, art, device, daypart) < 1.0
    assert 0.0 < WORLD.play_rate(who, what, art) < 1.0
    assert 0.0 < WORLD.examination(row, column) <= 1.0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), draws=st.integers(0, 2**32 - 1))
def test_no_page_beats_the_oracle(seed, draws):
    """The oracle's page has the most expected clicks among random pages of the request."""
    page = PageMaker(WORLD, np.random.default_rng(seed)).page(float(seed % 100))
    best = oracle(WORLD, page)
    best_value = expected_clicks(WORLD, page, best)
    rng = np.random.default_rng(draws)
    for _ in range(20):
        rows = tuple(
            page.rows[i].id for i in rng.choice(len(page.rows), page.select, replace=False)
        )
        artwork = {
            WORLD.titles[t].id: int(rng.integers(len(WORLD.titles[t].tones))) for t in page.titles()
        }
        hero = WORLD.titles[int(rng.choice(page.hero))].id
        assert expected_clicks(WORLD, page, PageChoice(hero, rows, artwork)) <= best_value + 1e-9


def test_only_the_hero_and_the_tiles_above_the_fold_are_shown():
    pages = PageMaker(WORLD, np.random.default_rng(1))
    for _ in range(200):
        page = pages.page(0.0)
        fold = WORLD.params.devices[page.device]
        shown = tiles(WORLD, page, oracle(WORLD, page))
        assert shown[0].row == -1 and shown[0].looked == 1.0
        assert all(t.row < fold.fold_rows and t.column < fold.fold_tiles for t in shown[1:])
        assert page.select == min(fold.fold_rows, len(page.rows))
        full = sum(min(fold.fold_tiles, len(page.row_titles[r])) for r in oracle(WORLD, page).rows)
        assert len(shown) == 1 + full
