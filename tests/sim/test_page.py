"""A simulated page: a request the service accepts, and feedback that matches what showed."""

from collections import Counter

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.learning.join import rewards_of
from serving.api import parse_decide
from sim.page import (
    ARTWORK,
    HERO,
    ROWS,
    PageMaker,
    artwork_key,
    decide_request,
    oracle,
    sample,
)
from sim.world import World
from storage.config_file import load_config

WORLD = World()
CONFIG = load_config(None)


def _page(seed: int):
    return PageMaker(WORLD, np.random.default_rng(seed)).page(float(seed % 60))


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_the_page_request_is_one_valid_decide_call(seed):
    page = _page(seed)
    body = decide_request(WORLD, page)
    request = parse_decide(msgspec.json.encode(body), CONFIG)  # raises on any contract breach
    slots = Counter(s.slot for s in request.slots)
    assert slots[HERO] == 1 and slots[ROWS] == 1
    assert slots[ARTWORK] == len(page.titles()) == len(set(page.titles()))
    rows = next(s for s in request.slots if s.slot == ROWS)
    assert rows.select == page.select
    hero = next(s for s in request.slots if s.slot == HERO)
    assert [c.default for c in hero.candidates].count(True) == 1
    assert request.user.id == page.person.id
    assert request.context == {"device": page.device, "daypart": page.daypart}


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_feedback_is_what_the_person_saw_and_did(seed):
    page = _page(seed)
    choice = oracle(WORLD, page)
    rng = np.random.default_rng(seed)
    outcome = sample(WORLD, page, choice, rng)
    ids = {(HERO, "hero"): "hero", (ROWS, "home"): "rows"}
    ids.update({(ARTWORK, f"title:{WORLD.titles[t].id}"): f"art-{t}" for t in page.titles()})
    feedback = outcome.feedback(WORLD, choice, ids, 1000.0, rng)
    assert [e.ts for e in feedback] == sorted(e.ts for e in feedback)
    assert all(e.ts >= 1000.0 for e in feedback)
    kinds = Counter((e.decision_id, e.type) for e in feedback)
    tiles = outcome.tiles
    # one impression per shown tile's decision, clicks and plays only where they happened
    for tile, clicked, played in zip(tiles, outcome.clicked, outcome.played, strict=True):
        decision = "hero" if tile.row < 0 else ids[ARTWORK, artwork_key(WORLD, tile)]
        assert kinds[decision, "impression"] == 1
        assert kinds[decision, "click"] == int(clicked)
        assert kinds[decision, "play"] == int(played)
        assert not played or clicked
    # the rows decision: an impression per row on the first screen, a click per clicked row
    row_events = [e for e in feedback if e.decision_id == "rows"]
    shown_rows = {t.row for t in tiles if t.row >= 0}
    assert {e.position for e in row_events if e.type == "impression"} == shown_rows
    clicked_rows = {t.row for t, c in zip(tiles, outcome.clicked, strict=True) if c and t.row >= 0}
    assert {e.position for e in row_events if e.type == "click"} == clicked_rows
    rewards = rewards_of(CONFIG.slots[ROWS], page.select, row_events)
    assert [r > 0 for r in rewards] == [p in clicked_rows for p in range(page.select)]
    # nothing for titles that did not show
    shown = {"hero", "rows"} | {ids[ARTWORK, artwork_key(WORLD, t)] for t in tiles if t.row >= 0}
    assert {e.decision_id for e in feedback} <= shown


def test_click_rates_follow_the_model():
    """Sampled clicks of many pages match the world's expected clicks within 3 sigma."""
    pages = PageMaker(WORLD, np.random.default_rng(5))
    rng = np.random.default_rng(6)
    clicks = expected = variance = 0.0
    for _ in range(3000):
        page = pages.page(0.0)
        outcome = sample(WORLD, page, oracle(WORLD, page), rng)
        clicks += outcome.clicks
        rates = np.array([t.click_rate for t in outcome.tiles])
        expected += rates.sum()
        variance += (rates * (1 - rates)).sum()
    assert abs(clicks - expected) < 3 * variance**0.5
