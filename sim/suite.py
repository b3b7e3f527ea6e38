"""A suite of seeded worlds that differ in what makes a choice good, for judging defaults.

Each world is one slot: people with observable features (a segment, a device) and a hidden
taste; candidates with a style, observable unless the world shows ids only. A candidate's
click probability is sigmoid(logit(base rate) + strength * effect), where the effect comes
from what the world says matters: user x style, device x style, the candidate's popularity,
or nothing, always plus the hidden taste x style. A world may also delay feedback, hide some
visitors' features (anonymous), bias positions (rows), offer each candidate rarely (a large
catalogue), put an editorial default first that suits two thirds of people, and change:
re-draw its tastes and add new candidates, move tastes to other styles on the same
candidates (abruptly or gradually), or swing between two sets of tastes (seasons).

The suite has two halves of fifteen worlds each, drawn to span the same ranges with
different values: defaults are chosen on `TUNING` and reported on `HELD_OUT`, so a figure
says how they do in worlds they were not chosen in. `WorldSpec.seeded` draws a world anew.

Every world knows two optima per request: the oracle (which sees the hidden taste) and the
best choice from the observable features alone (the expected click rate over the hidden
taste given what is observed). A policy's score is its expected reward as a share of the
observable optimum's, on the same requests: how much of the learnable value it got.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from bandit.contracts.events import Candidate, Context, FeatureValue, PolicyRef, RewardedEvent
from bandit.contracts.slots import SlotConfig, SlotKind
from bandit.policies import Policy, build_policy
from bandit.policies.base import default_order

SEGMENTS, DEVICES, TASTES, STYLES = 6, 3, 4, 8


@dataclass(frozen=True)
class WorldSpec:
    name: str
    kind: SlotKind
    seed: int
    base_rate: float  # the click rate of an average candidate
    candidates: int  # offered per request
    signal: str  # what matters besides hidden taste: user, context, popularity or none
    strength: float = 1.0  # of the observable signal, in logits
    hidden: float = 0.5  # of the hidden taste, in logits
    delay: int = 0  # requests between a decision and its feedback reaching the policy
    anonymous: float = 0.0  # share of visitors without user features
    position_bias: float = 0.7  # rows: examination falls by this factor per position
    select: int = 3  # rows: positions filled
    # how tastes move: "none"; "new" (they change and new candidates arrive at change_at);
    # "abrupt" (they change at change_at, the candidates stay); "gradual" (they blend into
    # new ones over `span` decisions from change_at); "seasonal" (they swing between two
    # sets and back every `span` decisions)
    change: Literal["none", "new", "abrupt", "gradual", "seasonal"] = "none"
    change_at: int | None = None  # decision index (None: halfway)
    span: int = 10_000
    described: bool = True  # candidates carry their style; else an id is all a policy sees
    catalogue: int = 0  # candidates to offer from (0: max(4 x candidates, 20))
    # > 0: the first candidate of every request is the same editorial default, this many
    # logits better than its style says for two thirds of the segments (worse for the rest)
    editorial: float = 0.0

    @property
    def drift(self) -> bool:
        return self.change != "none"

    def seeded(self, index: int) -> WorldSpec:
        """The same world drawn anew: seed index 0 is the world itself."""
        return dataclasses.replace(self, seed=self.seed + 1000 * index) if index else self


TUNING = (
    WorldSpec("artwork-user-taste", SlotKind.ARTWORK, 1, base_rate=0.05, candidates=4,
              signal="user", strength=1.2),
    WorldSpec("artwork-device", SlotKind.ARTWORK, 2, base_rate=0.08, candidates=6,
              signal="context", strength=0.8, anonymous=0.3),
    WorldSpec("artwork-rare-clicks", SlotKind.ARTWORK, 3, base_rate=0.01, candidates=3,
              signal="user", strength=1.5, delay=200, described=False),
    WorldSpec("hero-popularity", SlotKind.HERO, 4, base_rate=0.15, candidates=12,
              signal="popularity", strength=1.0, described=False),
    WorldSpec("hero-many", SlotKind.HERO, 5, base_rate=0.04, candidates=50,
              signal="user", strength=1.0, anonymous=0.5),
    WorldSpec("hero-drift", SlotKind.HERO, 6, base_rate=0.10, candidates=8,
              signal="user", strength=1.0, change="new", delay=50),
    WorldSpec("hero-two-frequent", SlotKind.HERO, 7, base_rate=0.40, candidates=2,
              signal="context", strength=0.6),
    WorldSpec("hero-no-signal", SlotKind.HERO, 8, base_rate=0.06, candidates=5,
              signal="none", hidden=0.8),
    WorldSpec("rows-user", SlotKind.ROWS, 9, base_rate=0.06, candidates=8, signal="user",
              strength=1.0, position_bias=0.7),
    WorldSpec("rows-popularity-drift", SlotKind.ROWS, 10, base_rate=0.12, candidates=10,
              signal="popularity", strength=0.8, position_bias=0.5, change="new"),
    WorldSpec("artwork-strong-taste", SlotKind.ARTWORK, 21, base_rate=0.15, candidates=6,
              signal="user", strength=2.5),
    WorldSpec("artwork-low-click-catalogue", SlotKind.ARTWORK, 23, base_rate=0.02,
              candidates=6, catalogue=360, signal="user", strength=1.0),
    WorldSpec("hero-abrupt-drift", SlotKind.HERO, 24, base_rate=0.05, candidates=8,
              signal="user", strength=1.0, change="abrupt", delay=50),
    WorldSpec("artwork-seasonal", SlotKind.ARTWORK, 25, base_rate=0.06, candidates=5,
              signal="user", strength=1.0, change="seasonal", span=20_000),
    WorldSpec("hero-editorial", SlotKind.HERO, 26, base_rate=0.05, candidates=6,
              signal="user", strength=0.8, editorial=1.0),
)  # fmt: skip
HELD_OUT = (
    WorldSpec("artwork-segment-delayed", SlotKind.ARTWORK, 11, base_rate=0.03, candidates=5,
              signal="user", strength=0.8, anonymous=0.1, delay=20),
    WorldSpec("artwork-device-ids", SlotKind.ARTWORK, 12, base_rate=0.12, candidates=4,
              signal="context", strength=1.0, described=False),
    WorldSpec("artwork-drift", SlotKind.ARTWORK, 13, base_rate=0.06, candidates=4,
              signal="user", strength=1.0, change="new", delay=100),
    WorldSpec("hero-popularity-rare", SlotKind.HERO, 14, base_rate=0.02, candidates=20,
              signal="popularity", strength=1.2),
    WorldSpec("hero-device-many", SlotKind.HERO, 15, base_rate=0.05, candidates=30,
              signal="context", strength=0.8, anonymous=0.2),
    WorldSpec("hero-frequent-user", SlotKind.HERO, 16, base_rate=0.30, candidates=3,
              signal="user", strength=0.5),
    WorldSpec("hero-weak-signal", SlotKind.HERO, 17, base_rate=0.08, candidates=6,
              signal="user", strength=0.4, hidden=1.0),
    WorldSpec("hero-new-titles-ids", SlotKind.HERO, 18, base_rate=0.10, candidates=10,
              signal="popularity", strength=1.0, change="new", described=False),
    WorldSpec("rows-device", SlotKind.ROWS, 19, base_rate=0.08, candidates=12,
              signal="context", strength=1.0, position_bias=0.8, select=4),
    WorldSpec("rows-user-anonymous", SlotKind.ROWS, 20, base_rate=0.04, candidates=6,
              signal="user", strength=1.2, position_bias=0.6, anonymous=0.4, delay=100),
    WorldSpec("hero-strong-device", SlotKind.HERO, 22, base_rate=0.25, candidates=5,
              signal="context", strength=2.0),
    WorldSpec("hero-low-click-catalogue", SlotKind.HERO, 27, base_rate=0.01, candidates=10,
              catalogue=600, signal="context", strength=1.2),
    WorldSpec("artwork-gradual-drift", SlotKind.ARTWORK, 28, base_rate=0.04, candidates=6,
              signal="user", strength=1.0, change="gradual", span=10_000, delay=20),
    WorldSpec("rows-seasonal", SlotKind.ROWS, 29, base_rate=0.05, candidates=8,
              signal="user", strength=1.0, position_bias=0.7, change="seasonal",
              span=20_000),
    WorldSpec("artwork-editorial", SlotKind.ARTWORK, 30, base_rate=0.03, candidates=4,
              signal="user", strength=0.8, editorial=0.8),
)  # fmt: skip
SUITE = TUNING + HELD_OUT
HALVES = {"tuning": TUNING, "held-out": HELD_OUT}


@dataclass(frozen=True)
class Request:
    context: Context
    candidates: list[Candidate]
    p_true: np.ndarray  # (candidates,) click probability given everything, hidden taste too
    p_observable: np.ndarray  # (candidates,) expected over the hidden taste given what is seen


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    result: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return result


class SuiteWorld:
    """One world of the suite; `request(t)` draws the t-th request of a run of `horizon`."""

    def __init__(self, spec: WorldSpec, horizon: int):
        self.spec = spec
        self.horizon = horizon
        self.rng = np.random.default_rng(spec.seed)
        rng = np.random.default_rng(spec.seed + 1000)
        self.catalogue = spec.catalogue or max(4 * spec.candidates, 20)
        self.style = rng.integers(STYLES, size=2 * self.catalogue)  # the second half: new
        self.popularity = rng.normal(size=2 * self.catalogue)
        self.effects = [self._effects(rng) for _ in range(2)]  # before / after the change
        if spec.change in ("abrupt", "gradual", "seasonal"):
            # the same tastes, moved to other styles: as strong as before, so the optimum
            # stays where it was and what the policy learned to serve pays what chance does
            moved = rng.permutation(STYLES)
            self.effects[1] = {k: v[:, moved] for k, v in self.effects[0].items()}
        self.taste_given_segment = rng.dirichlet(np.ones(TASTES) * 0.5, size=SEGMENTS)
        self.base = _logit(spec.base_rate)

    def _effects(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {
            "user": rng.normal(size=(SEGMENTS, STYLES)),
            "context": rng.normal(size=(DEVICES, STYLES)),
            "hidden": rng.normal(size=(TASTES, STYLES)),
        }

    @property
    def change_at(self) -> int:
        """The decision at which the world starts to change."""
        return self.horizon // 2 if self.spec.change_at is None else self.spec.change_at

    def _moved(self, t: int) -> float:
        """How far tastes have moved to the second set at decision t (0 to 1)."""
        spec = self.spec
        since = t - self.change_at
        match spec.change:
            case "new" | "abrupt":
                return float(since >= 0)
            case "gradual":
                return float(np.clip(since / spec.span, 0.0, 1.0))
            case "seasonal":
                return float(np.sin(np.pi * t / spec.span) ** 2)
        return 0.0

    def _effects_at(self, t: int) -> dict[str, np.ndarray]:
        moved = self._moved(t)
        if moved in (0.0, 1.0):
            return self.effects[int(moved)]
        before, after = self.effects
        return {k: (1 - moved) * before[k] + moved * after[k] for k in before}

    def request(self, t: int) -> Request:
        spec, rng = self.spec, self.rng
        period = int(spec.change == "new" and t >= self.change_at)
        effects = self._effects_at(t)
        segment, device = int(rng.integers(SEGMENTS)), int(rng.integers(DEVICES))
        taste = int(rng.choice(TASTES, p=self.taste_given_segment[segment]))
        anonymous = rng.random() < spec.anonymous
        # the catalogue: the first half, plus the new half once the world has changed
        pool = self.catalogue * (1 + period)
        items = rng.choice(pool, size=spec.candidates, replace=False)
        if spec.editorial:  # the editorial default first, the same item on every page
            items = np.concatenate(([2 * self.catalogue], items[1:]))
        styles = self.style[items % len(self.style)]
        observable = self._observable(effects, segment, device, items, styles)
        logits = self.base + spec.strength * observable
        logits += self._editorial(segment, len(items))
        p_true = _sigmoid(logits + spec.hidden * effects["hidden"][taste, styles])
        seen = self._seen(effects, segment if not anonymous else None, logits, styles)
        user: dict[str, FeatureValue] = {} if anonymous else {"segment": f"s{segment}"}
        request: dict[str, FeatureValue] = {"device": f"d{device}"}
        context = Context(user=user, request=request)
        candidates = [
            Candidate(
                id=f"item{i}",
                features={"style": f"style{style}"} if spec.described else {},
                default=bool(spec.editorial) and k == 0,
            )
            for k, (i, style) in enumerate(zip(items, styles, strict=True))
        ]
        return Request(context, candidates, p_true, seen)

    def _observable(
        self,
        effects: dict[str, np.ndarray],
        segment: int,
        device: int,
        items: np.ndarray,
        styles: np.ndarray,
    ) -> np.ndarray:
        """(candidates,) what the world's observable signal adds, before its strength."""
        match self.spec.signal:
            case "user":
                values: np.ndarray = effects["user"][segment, styles]
            case "context":
                values = effects["context"][device, styles]
            case "popularity":
                values = self.popularity[items % len(self.popularity)]
            case _:
                values = np.zeros(len(items))
        return values

    def _seen(
        self,
        effects: dict[str, np.ndarray],
        segment: int | None,
        logits: np.ndarray,
        styles: np.ndarray,
    ) -> np.ndarray:
        """(candidates,) the click rate expected from what is observable: over the hidden
        taste given the segment, or, for an anonymous visitor (`segment` None), over the
        tastes of every segment (and over the segments too when they carry the signal)."""
        spec, hidden = self.spec, self.spec.hidden * effects["hidden"][:, styles]
        if segment is not None or spec.signal != "user":
            tastes = (
                self.taste_given_segment[segment]
                if segment is not None
                else self.taste_given_segment.mean(axis=0)
            )
            expected: np.ndarray = tastes @ _sigmoid(logits[None, :] + hidden)
            return expected
        by_segment = [
            self.taste_given_segment[s]
            @ _sigmoid(
                self.base
                + spec.strength * effects["user"][s, styles][None, :]
                + self._editorial(s, len(styles))[None, :]
                + hidden
            )
            for s in range(SEGMENTS)
        ]
        seen: np.ndarray = np.mean(by_segment, axis=0)
        return seen

    def _editorial(self, segment: int, count: int) -> np.ndarray:
        """(candidates,) the editorial default's logit offset for a segment."""
        offset = np.zeros(count)
        if self.spec.editorial:
            offset[0] = self.spec.editorial * (1.0 if segment < 2 * SEGMENTS // 3 else -1.0)
        return offset

    def examination(self) -> np.ndarray:
        """(positions,) how likely each position is looked at (1 for one choice)."""
        if not self.spec.kind.ranked:
            return np.ones(1)
        return self.spec.position_bias ** np.arange(self.spec.select)

    def value(self, request: Request, chosen: list[int]) -> float:
        """Expected clicks of showing candidates `chosen` (indices) in order."""
        return float(self.examination()[: len(chosen)] @ request.p_true[chosen])

    def observable_optimum(self, request: Request) -> list[int]:
        """The best order from what is observable (expected rate over the hidden taste)."""
        count = len(self.examination()) if self.spec.kind.ranked else 1
        return list(np.argsort(-request.p_observable, kind="stable")[:count])

    def clicks(self, request: Request, chosen: list[int]) -> list[float]:
        probabilities = self.examination()[: len(chosen)] * request.p_true[chosen]
        return [float(c) for c in self.rng.random(len(chosen)) < probabilities]


# Called every `every` decisions with the decision count, the log so far and the policy;
# returns a policy to switch to, or None (self-tuning, in process).
Retune = Callable[[int, list[RewardedEvent], Policy], Policy | None]


@dataclass
class Played:
    """What a run got, decision by decision: expected reward of the policy's choice, of the
    observable optimum's and of the editorial default's."""

    value: np.ndarray
    optimum: np.ndarray
    default: np.ndarray
    switches: list[int] = field(default_factory=list)  # decisions at which it switched
    changes: list[int] = field(default_factory=list)  # decisions at which it saw a change

    def share(self, start: int, end: int) -> float:
        """The policy's expected reward as a share of the optimum's over [start, end)."""
        return float(self.value[start:end].sum() / self.optimum[start:end].sum())

    @property
    def shares(self) -> dict[int, float]:
        """{checkpoint: share over the last 10% of decisions before it} for the usual
        checkpoints that the run reached."""
        return {c: self.share(c - c // 10, c) for c in CHECKPOINTS if c <= len(self.value)}


CHECKPOINTS = (10_000, 50_000, 200_000)


def play(
    spec: WorldSpec,
    decisions: int,
    slot_config: SlotConfig,
    retune: Retune | None = None,
    every: int = 10_000,
    progress: Callable[[int], None] = lambda done: None,
) -> Played:
    """Run a world's slot for `decisions` requests: the policy decides, learns each
    click-reward `delay` requests later; returns the expected reward of each decision, the
    observable optimum's and the editorial default's."""
    slot = spec.kind.value
    policy = build_policy(slot_config)
    world = SuiteWorld(spec, decisions)
    pending: deque[tuple[int, RewardedEvent]] = deque()
    log: list[RewardedEvent] = []
    played = Played(np.zeros(decisions), np.zeros(decisions), np.zeros(decisions))
    reward = slot_config.reward
    count = len(world.examination())
    for t in range(decisions):
        if retune is not None and t and t % every == 0:
            switched = retune(t, log, policy)
            if switched is not None:
                policy.close()
                policy = switched
                played.switches.append(t)
        request = world.request(t)
        choice = policy.decide(request.context, request.candidates)
        index = {c.id: i for i, c in enumerate(request.candidates)}
        chosen = [index[c] for c in choice.chosen]
        played.value[t] = world.value(request, chosen)
        played.optimum[t] = world.value(request, world.observable_optimum(request))
        played.default[t] = world.value(request, default_order(request.candidates)[:count])
        clicks = world.clicks(request, chosen)
        policy_ref = PolicyRef(name=slot, version="suite")
        decision = choice.event(
            f"d{t}", float(t), slot, "suite", request.context, request.candidates, policy_ref
        )
        rewards = [min(reward.click * c, reward.max) for c in clicks]
        pending.append((t + spec.delay, RewardedEvent.from_decision(decision, rewards, True, t)))
        while pending and pending[0][0] <= t:
            event = pending.popleft()[1]
            seen = policy.changes_detected
            policy.learn(event)
            if policy.changes_detected > seen:
                played.changes.append(t)
            log.append(event)
        if t % 1000 == 0:
            progress(t)
    policy.close()
    return played
