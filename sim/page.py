"""One page view: what the frontend asks for, what it shows above the fold, what the person
does, and the feedback events that tell the learner.

The frontend asks for the whole page in one call: the hero, the order of the rows, and the
artwork of every title any row could show. Only what lands above the fold is impressed;
the rest of the decisions are never seen, and the learner drops them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from bandit.contracts.events import Candidate, Context, FeatureValue, FeedbackEvent, FeedbackType
from sim.world import Person, Row, World

HERO, ROWS, ARTWORK = "hero", "rows", "artwork"


@dataclass(frozen=True)
class Page:
    """A page request: who, on what, and the candidates of each slot."""

    person: Person
    device: str
    daypart: str
    hero: tuple[int, ...]  # candidate titles; the first is the editorial default
    rows: tuple[Row, ...]  # candidate rows in editorial order
    row_titles: Mapping[str, tuple[int, ...]]  # the titles each row would show, in order
    select: int  # rows placed: as many as the first screen shows

    @property
    def context(self) -> Context:
        return Context(user=dict(self.person.features), request=self.request_features)

    @property
    def request_features(self) -> dict[str, FeatureValue]:
        return {"device": self.device, "daypart": self.daypart}

    def titles(self) -> list[int]:
        """Every title a row could show, once each, in row order."""
        return [t for row in self.rows for t in self.row_titles[row.id]]


@dataclass(frozen=True)
class PageChoice:
    """What a policy (or the oracle) put on the page."""

    hero: str  # title id
    rows: tuple[str, ...]  # row ids, top first
    artwork: Mapping[str, int]  # title id -> artwork index, for every title that shows


@dataclass(frozen=True)
class Tile:
    row: int  # position of the row on the page; -1 is the hero
    column: int
    title: int
    artwork: int
    looked: float  # P(looked at)
    attractive: float  # P(click | looked at)
    play: float  # P(play | click)

    @property
    def click_rate(self) -> float:
        return self.looked * self.attractive


@dataclass(frozen=True)
class Outcome:
    """What the person did on one page: a click (and maybe a play) per impressed tile."""

    tiles: tuple[Tile, ...]
    clicked: tuple[bool, ...]
    played: tuple[bool, ...]

    @property
    def impressions(self) -> int:
        return len(self.tiles)

    @property
    def clicks(self) -> int:
        return sum(self.clicked)

    @property
    def plays(self) -> int:
        return sum(self.played)

    @property
    def expected_clicks(self) -> float:
        """What the world expected of the page shown (no sampling noise)."""
        return sum(tile.click_rate for tile in self.tiles)

    def feedback(
        self,
        world: World,
        choice: PageChoice,
        decision_ids: Mapping[tuple[str, str], str],
        ts: float,
        rng: np.random.Generator,
    ) -> list[FeedbackEvent]:
        """The frontend's feedback for decisions keyed by (slot, key): an impression for
        each impressed tile (and row position), then clicks and plays a few seconds later."""
        out: list[FeedbackEvent] = []

        def send(
            slot: str, key: str, kind: FeedbackType, at: float, position: int | None = None
        ) -> None:
            out.append(
                FeedbackEvent(
                    decision_id=decision_ids[slot, key], ts=at, type=kind, position=position
                )
            )

        shown = ts + 0.2
        for row in range(max((t.row for t in self.tiles), default=-1) + 1):
            send(ROWS, "home", "impression", shown, row)
        row_clicked: dict[int, float] = {}
        row_played: dict[int, float] = {}
        for tile, clicked, played in zip(self.tiles, self.clicked, self.played, strict=True):
            slot, key = (HERO, "hero") if tile.row < 0 else (ARTWORK, artwork_key(world, tile))
            send(slot, key, "impression", shown)
            if not clicked:
                continue
            click_at = shown + float(rng.uniform(0.5, 3.0))
            send(slot, key, "click", click_at)
            if tile.row >= 0:
                row_clicked.setdefault(tile.row, click_at)
            if played:
                play_at = click_at + float(rng.uniform(1.0, 4.0))
                send(slot, key, "play", play_at)
                if tile.row >= 0:
                    row_played.setdefault(tile.row, play_at)
        for row, at in row_clicked.items():
            send(ROWS, "home", "click", at, row)
        for row, at in row_played.items():
            send(ROWS, "home", "play", at, row)
        out.sort(key=lambda event: event.ts)
        return out


def artwork_key(world: World, tile: Tile) -> str:
    return f"title:{world.titles[tile.title].id}"


@dataclass
class PageMaker:
    """Draws page requests from a world: who visits, on which device, with which rows."""

    world: World
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    def page(self, clock_s: float) -> Page:
        world, rng, p = self.world, self.rng, self.world.params
        person = world.visitor(rng)
        device = person.device if rng.random() < 0.8 else str(rng.choice(world.device_names))
        heroes = rng.choice(world.featured, size=p.hero_candidates, replace=False).tolist()
        heroes.sort(key=lambda t: -world.titles[t].popularity)  # editorial: most popular
        used: set[int] = set()
        rows, row_titles = [], {}
        for row in world.rows:
            pool = person.history if row.pool is None else row.pool
            free = [t for t in pool if t not in used]
            if not free:
                continue
            picks = free[: p.tiles_per_row]  # a row shows its titles in its own order
            used.update(picks)
            rows.append(row)
            row_titles[row.id] = tuple(int(t) for t in picks)
        return Page(
            person=person,
            device=device,
            daypart=world.daypart(clock_s),
            hero=tuple(int(t) for t in heroes),
            rows=tuple(rows),
            row_titles=row_titles,
            select=min(p.devices[device].fold_rows, len(rows)),
        )


def hero_candidates(world: World, page: Page) -> list[Candidate]:
    return [world.hero_candidate(world.titles[t], default=i == 0) for i, t in enumerate(page.hero)]


def row_candidates(world: World, page: Page) -> list[Candidate]:
    return [world.row_candidate(row, page.row_titles[row.id]) for row in page.rows]


def decide_request(world: World, page: Page) -> dict[str, Any]:
    """The `/v1/decide` body for the whole page."""
    slots: list[dict[str, Any]] = [
        {"slot": HERO, "key": "hero", "candidates": hero_candidates(world, page)},
        {"slot": ROWS, "key": "home", "select": page.select,
         "candidates": row_candidates(world, page)},
    ]  # fmt: skip
    for t in page.titles():
        title = world.titles[t]
        slots.append(
            {"slot": ARTWORK, "key": f"title:{title.id}",
             "candidates": world.artwork_candidates(title)}
        )  # fmt: skip
    body = {
        "user": {"id": page.person.id, "features": dict(page.person.features)},
        "context": page.request_features,
        "slots": slots,
    }
    # candidates as JSON objects, `default` only when set
    result: dict[str, Any] = msgspec.to_builtins(body)
    return result


def artwork_index(candidate_id: str) -> int:
    """`t0012-a3` -> 3."""
    return int(candidate_id.rpartition("-a")[2])


def tiles(world: World, page: Page, choice: PageChoice) -> list[Tile]:
    """What shows above the fold: the hero, then the first rows' first tiles."""
    device = world.params.devices[page.device]
    person, daypart = page.person, page.daypart
    hero = world.title_by_id[choice.hero]
    shown = [
        Tile(
            -1,
            0,
            hero.index,
            0,
            1.0,
            world.attractiveness(person, hero, 0, page.device, daypart),
            world.play_rate(person, hero, 0),
        )
    ]
    for r, row_id in enumerate(choice.rows[: device.fold_rows]):
        for c, t in enumerate(page.row_titles[row_id][: device.fold_tiles]):
            title = world.titles[t]
            art = choice.artwork[title.id]
            shown.append(
                Tile(
                    row=r,
                    column=c,
                    title=t,
                    artwork=art,
                    looked=world.examination(r, c),
                    attractive=world.attractiveness(person, title, art, page.device, daypart),
                    play=world.play_rate(person, title, art),
                )
            )
    return shown


def expected_clicks(world: World, page: Page, choice: PageChoice) -> float:
    return sum(tile.click_rate for tile in tiles(world, page, choice))


def sample(world: World, page: Page, choice: PageChoice, rng: np.random.Generator) -> Outcome:
    shown = tiles(world, page, choice)
    draws = rng.random((len(shown), 2))
    clicked = tuple(bool(d[0] < t.click_rate) for d, t in zip(draws, shown, strict=True))
    played = tuple(bool(c and d[1] < t.play) for c, d, t in zip(clicked, draws, shown, strict=True))
    return Outcome(tuple(shown), clicked, played)


def oracle(world: World, page: Page) -> PageChoice:
    """The page with the most expected clicks, knowing the person's hidden taste: the most
    attractive hero and artworks, and the rows sorted by their looked-at clicks (the
    position-based model makes that order exact)."""
    person, device, daypart = page.person, page.device, page.daypart
    fold = world.params.devices[device]

    def best_art(t: int) -> tuple[int, float]:
        title = world.titles[t]
        scores = [
            world.attractiveness(person, title, a, device, daypart) for a in range(len(title.tones))
        ]
        best = int(np.argmax(scores))
        return best, scores[best]

    artwork: dict[str, int] = {}
    row_value: dict[str, float] = {}
    for row in page.rows:
        value = 0.0
        for c, t in enumerate(page.row_titles[row.id]):
            art, score = best_art(t)
            artwork[world.titles[t].id] = art
            if c < fold.fold_tiles:
                value += world.examination(0, c) * score
        row_value[row.id] = value
    order = sorted(row_value, key=lambda r: -row_value[r])[: page.select]
    hero = max(
        page.hero, key=lambda t: world.attractiveness(person, world.titles[t], 0, device, daypart)
    )
    return PageChoice(world.titles[hero].id, tuple(order), artwork)
