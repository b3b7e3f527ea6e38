"""A seeded home-page world: people with hidden tastes, titles with artworks, rows, and the
click and play model that ties them together.

A person's taste is a mix over taste clusters, mostly one. The frontend only sees a noisy
trace of it (`fav_genre`, from watch history), the device and the time of day. A tile's
chance of a click is the position-based model: the chance its row and column are looked at
(position bias) times its attractiveness, which grows with the person's taste for the
title's genre and for the artwork's tone. A click becomes a play more often when the
artwork told the truth about the title. The world knows all of it, so it knows the best
page for each request (the oracle) and the expected clicks of any page.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
import numpy as np

from bandit.config import ConfigError, deep_merge, nest, parse_override, validated
from bandit.contracts.events import Candidate, FeatureValue

Share = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Count = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Weight = Annotated[float, msgspec.Meta(ge=-20.0, le=20.0)]

SHOTS = ("closeup", "ensemble", "scenery", "title")
DAYPARTS = ("morning", "afternoon", "evening", "late")


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class Device(_Strict, frozen=True):
    """How often people use it and how much of the page shows without scrolling."""

    share: Share
    fold_rows: Annotated[int, msgspec.Meta(ge=1, le=20)]
    fold_tiles: Annotated[int, msgspec.Meta(ge=1, le=20)]
    shot_boost: dict[str, Weight] = msgspec.field(default_factory=dict)


def _devices() -> dict[str, Device]:
    return {
        "tv": Device(share=0.5, fold_rows=3, fold_tiles=4, shot_boost={"scenery": 0.3}),
        "phone": Device(share=0.3, fold_rows=2, fold_tiles=3, shot_boost={"closeup": 0.4}),
        "web": Device(share=0.2, fold_rows=3, fold_tiles=4, shot_boost={"title": 0.2}),
    }


def _daypart_boost() -> dict[str, dict[str, float]]:
    return {"morning": {"family": 0.4}, "afternoon": {"family": 0.3}, "late": {"documentary": 0.3}}


class Effects(_Strict, frozen=True):
    """The click and play model. Logits add up; affinities are the taste mix (0..1)."""

    base_logit: Weight = -3.2
    genre_weight: Weight = 1.5  # taste for the title's genre
    tone_weight: Weight = 2.5  # taste for the artwork's tone
    popularity_sd: Annotated[float, msgspec.Meta(ge=0.0, le=5.0)] = 0.5
    art_quality_sd: Annotated[float, msgspec.Meta(ge=0.0, le=5.0)] = 0.2
    row_bias: Share = 0.8  # each row further down is looked at this much less
    column_bias: Share = 0.9  # each tile further right, likewise
    play_logit: Weight = 0.0  # a click becomes a play...
    play_genre_weight: Weight = 2.0  # ...more often for a genre the person likes
    play_mismatch: Weight = 1.0  # ...less often when the artwork's tone is not the genre's
    daypart_boost: dict[str, dict[str, Weight]] = msgspec.field(default_factory=_daypart_boost)


class WorldParams(_Strict, frozen=True):
    """Everything that shapes a world; configs/world.toml documents the defaults."""

    seed: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 7
    tastes: Annotated[list[str], msgspec.Meta(min_length=2, max_length=20)] = msgspec.field(
        default_factory=lambda: ["romance", "action", "comedy", "documentary", "family"]
    )
    users: Count = 20_000
    returning: Annotated[float, msgspec.Meta(ge=0.0, le=3.0)] = 0.8  # Zipf exponent of visits
    taste_focus: Share = 0.75  # weight of a person's main taste in their mix
    history_titles: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 20  # titles watched so far
    new_user_share: Share = 0.1  # people with no history: no fav_genre, no continue watching
    signup_accuracy: Share = 0.8  # how often a newcomer's sign-up pick is their main taste
    titles: Annotated[int, msgspec.Meta(ge=20, le=100_000)] = 150
    min_artworks: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3
    max_artworks: Annotated[int, msgspec.Meta(ge=1, le=20)] = 6
    hero_candidates: Annotated[int, msgspec.Meta(ge=2, le=50)] = 6
    tiles_per_row: Annotated[int, msgspec.Meta(ge=1, le=20)] = 4  # artwork asked per row
    day_length_s: Annotated[float, msgspec.Meta(gt=0.0, le=86_400.0)] = 60.0
    devices: dict[str, Device] = msgspec.field(default_factory=_devices)
    effects: Effects = msgspec.field(default_factory=Effects)

    def __post_init__(self) -> None:
        if self.min_artworks > self.max_artworks:
            raise ValueError("min_artworks is above max_artworks")
        if len(set(self.tastes)) != len(self.tastes):
            raise ValueError("tastes repeat")
        if not self.devices or sum(d.share for d in self.devices.values()) <= 0:
            raise ValueError("devices need a positive share")
        if any(d.fold_tiles > self.tiles_per_row for d in self.devices.values()):
            raise ValueError("a device shows more tiles above the fold than tiles_per_row")


def load_world(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> WorldParams:
    """World parameters: defaults, then the TOML file, then `key=value` overrides; errors
    raise `ConfigError` naming the key (as `world.<key>`)."""
    raw: dict[str, Any] = msgspec.to_builtins(WorldParams())
    if path is not None:
        try:
            deep_merge(raw, tomllib.loads(Path(path).read_text()), prefix="world.")
        except FileNotFoundError:
            raise ConfigError("world", f"file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("world", f"{path} is not valid TOML: {exc}") from None
    for override in overrides:
        key, value = parse_override(override)
        deep_merge(raw, nest(key, value), prefix="world.")
    return validated(raw, WorldParams, prefix="world")


@dataclass(frozen=True)
class Person:
    """One returning user: the hidden taste mix and what the frontend knows."""

    id: str
    taste: int  # main taste cluster (hidden)
    mix: np.ndarray  # taste weights over clusters, summing to 1 (hidden)
    device: str  # usual device
    features: dict[str, str | int | float]  # visible: watch history, tenure
    history: tuple[int, ...]  # titles started: the continue-watching row


@dataclass(frozen=True)
class Title:
    index: int
    id: str
    genre: int
    popularity: float  # logit offset
    tones: tuple[int, ...]  # per artwork; artwork 0 is the key art, in the title's genre
    shots: tuple[str, ...]
    quality: tuple[float, ...]  # per artwork, logit offset


@dataclass(frozen=True)
class Row:
    id: str
    features: dict[str, str]
    pool: tuple[int, ...] | None  # titles; None: the person's history (continue watching)


class World:
    """The catalogue, the people and the click model of one seeded world."""

    def __init__(self, params: WorldParams | None = None):
        self.params = params = params or WorldParams()
        self.effects = params.effects
        rng = np.random.default_rng(params.seed)
        self.tastes = tuple(params.tastes)
        self.taste_index = {t: i for i, t in enumerate(self.tastes)}
        self.titles = [self._title(i, rng) for i in range(params.titles)]
        self.title_by_id = {t.id: t for t in self.titles}
        by_popularity = sorted(range(len(self.titles)), key=lambda i: -self.titles[i].popularity)
        self.featured = tuple(by_popularity[: max(4 * params.hero_candidates, 20)])
        self.rows = self._rows(rng, by_popularity)
        self.row_by_id = {r.id: r for r in self.rows}
        self.device_names = tuple(params.devices)
        shares = np.array([d.share for d in params.devices.values()])
        self.device_shares = shares / shares.sum()
        ranks = np.arange(1, params.users + 1, dtype=float)
        visits = ranks**-params.returning
        self.visit_weights = visits / visits.sum()
        self._people: dict[int, Person] = {}

    # ------------------------------------------------------------------ catalogue
    def _title(self, index: int, rng: np.random.Generator) -> Title:
        p, k = self.params, len(self.params.tastes)
        genre = int(rng.integers(k))
        count = int(rng.integers(p.min_artworks, p.max_artworks + 1))
        others = rng.permutation([t for t in range(k) if t != genre]).tolist()
        tones = [genre] + [others[i % len(others)] for i in range(count - 1)]
        return Title(
            index=index,
            id=f"t{index:04d}",
            genre=genre,
            popularity=float(rng.normal(0.0, p.effects.popularity_sd)),
            tones=tuple(tones),
            shots=tuple(SHOTS[int(s)] for s in rng.integers(len(SHOTS), size=count)),
            quality=tuple(rng.normal(0.0, p.effects.art_quality_sd, size=count).tolist()),
        )

    def _rows(self, rng: np.random.Generator, by_popularity: list[int]) -> list[Row]:
        """The rows a page can hold, in the editorial order (what the control group sees)."""
        n = len(self.titles)

        def pool(size: int) -> tuple[int, ...]:
            return tuple(int(i) for i in rng.choice(n, size=min(size, n), replace=False))

        rows = [
            Row("continue_watching", {"kind": "continue"}, None),
            Row("trending", {"kind": "trending"}, tuple(by_popularity[:25])),
            Row("new_releases", {"kind": "new"}, pool(25)),
            Row("top_picks", {"kind": "editorial"}, tuple(by_popularity[10:40])),
        ]
        for g, taste in enumerate(self.tastes):
            genre_pool = tuple(t.index for t in self.titles if t.genre == g)
            rows.append(Row(f"genre_{taste}", {"kind": "genre", "genre": taste}, genre_pool))
        rows += [
            Row("award_winners", {"kind": "editorial"}, pool(25)),
            Row("hidden_gems", {"kind": "editorial"}, tuple(by_popularity[-30:])),
            Row("international", {"kind": "editorial"}, pool(25)),
            Row("short_watches", {"kind": "editorial"}, pool(25)),
        ]
        return rows

    # ------------------------------------------------------------------ people
    def person(self, index: int) -> Person:
        """User `index`, the same every time it is asked for (seeded by world and index)."""
        cached = self._people.get(index)
        if cached is not None:
            return cached
        p, k = self.params, len(self.tastes)
        rng = np.random.default_rng([p.seed, 1, index])
        taste = int(rng.integers(k))
        mix = (1.0 - p.taste_focus) * rng.dirichlet(np.ones(k))
        mix[taste] += p.taste_focus
        device = self.device_names[int(rng.choice(len(self.device_names), p=self.device_shares))]
        new = rng.random() < p.new_user_share
        features: dict[str, str | int | float] = {
            "tenure_months": 0 if new else int(rng.integers(1, 60))
        }
        history: tuple[int, ...] = ()
        if new:  # all a newcomer told: the genre they picked when signing up
            picked = taste if rng.random() < p.signup_accuracy else int(rng.integers(k))
            features["signup_genre"] = self.tastes[picked]
        else:  # what watch history reveals: genre shares, and the favourite
            liked = np.array([mix[t.genre] for t in self.titles])
            watched = rng.choice(len(self.titles), p.history_titles, p=liked / liked.sum())
            shares = np.bincount([self.titles[t].genre for t in watched], minlength=k)
            shares = shares / shares.sum()
            features["fav_genre"] = self.tastes[int(np.argmax(shares))]
            for g, name in enumerate(self.tastes):
                features[f"watched_{name}"] = round(float(shares[g]), 2)
            history = tuple(dict.fromkeys(int(t) for t in watched))[:8]
        person = Person(f"u{index:06d}", taste, mix, device, features, history)
        self._people[index] = person
        return person

    def visitor(self, rng: np.random.Generator) -> Person:
        """Who visits next: frequent visitors come back often (Zipf over the population)."""
        return self.person(int(rng.choice(self.params.users, p=self.visit_weights)))

    def daypart(self, clock_s: float) -> str:
        phase = (clock_s % self.params.day_length_s) / self.params.day_length_s
        return DAYPARTS[int(phase * len(DAYPARTS)) % len(DAYPARTS)]

    # ------------------------------------------------------------------ click model
    def attractiveness(
        self, person: Person, title: Title, artwork: int, device: str, daypart: str
    ) -> float:
        """P(click | the tile is looked at)."""
        e = self.effects
        tone = title.tones[artwork]
        boost = self.params.devices[device].shot_boost.get(title.shots[artwork], 0.0)
        boost += e.daypart_boost.get(daypart, {}).get(self.tastes[tone], 0.0)
        logit = (
            e.base_logit
            + title.popularity
            + e.genre_weight * person.mix[title.genre]
            + e.tone_weight * person.mix[tone]
            + title.quality[artwork]
            + boost
        )
        return float(1.0 / (1.0 + np.exp(-logit)))

    def play_rate(self, person: Person, title: Title, artwork: int) -> float:
        """P(play | click): lower when the artwork's tone promised another genre."""
        e = self.effects
        mismatch = float(title.tones[artwork] != title.genre)
        logit = e.play_logit + e.play_genre_weight * (person.mix[title.genre] - 0.5)
        logit -= e.play_mismatch * mismatch
        return float(1.0 / (1.0 + np.exp(-logit)))

    def examination(self, row: int, column: int) -> float:
        """P(looked at) of the tile at (row, column) above the fold; the hero is row -1."""
        if row < 0:
            return 1.0
        return self.effects.row_bias**row * self.effects.column_bias**column

    # ------------------------------------------------------------------ candidates
    def artwork_candidates(self, title: Title) -> list[Candidate]:
        return [
            Candidate(
                id=f"{title.id}-a{a}",
                features={"tone": self.tastes[tone], "shot": title.shots[a]},
                default=a == 0,
            )
            for a, tone in enumerate(title.tones)
        ]

    def hero_candidate(self, title: Title, default: bool) -> Candidate:
        features: dict[str, FeatureValue] = {
            "genre": self.tastes[title.genre],
            "popularity": round(title.popularity, 2),
        }
        return Candidate(id=title.id, features=features, default=default)

    def row_candidate(self, row: Row, titles: Sequence[int]) -> Candidate:
        """A row with what the frontend knows of the titles it holds: their genre mix and
        mean popularity."""
        features: dict[str, str | float] = dict(row.features)
        genres = np.bincount([self.titles[t].genre for t in titles], minlength=len(self.tastes))
        for g, name in enumerate(self.tastes):
            if genres[g]:
                features[f"share_{name}"] = round(float(genres[g] / len(titles)), 2)
        popularity = np.mean([self.titles[t].popularity for t in titles])
        features["popularity"] = round(float(popularity), 2)
        return Candidate(id=row.id, features=features)
