"""Slot kinds, the VW namespaces that every kind's examples use, and one slot's settings.

A slot's settings live here rather than in `config` because policies are built from them
and the config loader builds policies to check them: config -> policies -> slots.
"""

from __future__ import annotations

import re
import shlex
from enum import StrEnum
from typing import Annotated, Literal

import msgspec

Probability = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0.0, le=1e12)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0.0, le=1e12)]

ExplorationStrategy = Literal["greedy", "epsilon", "softmax", "bag", "cover", "squarecb", "rnd"]
PolicyType = Literal["vw", "uniform", "default", "thompson"]


class SlotKind(StrEnum):
    """What a slot decides: one artwork, one hero title, or an order of rows."""

    ARTWORK = "artwork"
    HERO = "hero"
    ROWS = "rows"

    @property
    def ranked(self) -> bool:
        """True when the slot chooses an ordered list of several candidates."""
        return self is SlotKind.ROWS


# VW namespaces; interactions (-q, --lrq) name them by first letter.
NAMESPACES = {
    "U": "User",  # user features (shared)
    "C": "Context",  # request context (shared)
    "A": "Action",  # candidate features
    "I": "Id",  # candidate id, so each candidate can have its own weight
    "S": "Slot",  # position, for rows
}


# VW options a slot sets by name: vw_args may not set them behind its back
_NAMED_OPTIONS = {
    "learning_rate": re.compile(r"^(-l|--learning_rate(=.*)?)$|^-l[0-9.]"),
    "learning_rate_decay": re.compile(r"^--power_t(=.*)?$"),
    "importance_weight_cap": re.compile(r"^--clip_p(=.*)?$"),
    "exploration.squarecb_gamma_exponent": re.compile(r"^--gamma_exponent(=.*)?$"),
    "reward.max": re.compile(r"^--(min|max)_prediction(=.*)?$"),
}


class StrictSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base for config sections: unknown keys are an error, never silently ignored."""


class Exploration(StrictSection, frozen=True):
    """How a VW policy explores. Default: greedy with a floor (BaRT's epsilon-greedy): the
    model's best, and `floor` of every treatment position spread evenly over the
    candidates, whatever the strategy; chosen across the world suite (docs/quality.md, "Decision
    quality"). `epsilon` is VW's own for the epsilon, bag, cover and rnd explorers, and
    what a cold policy (nothing learned yet) spreads around the editorial default."""

    strategy: ExplorationStrategy = "greedy"
    # whatever the explorer prefers, this share of every treatment position is spread
    # evenly over its candidates, so each of n keeps floor / n: a misjudged candidate is
    # still tried, the world moving is still seen, and the log supports replay
    floor: Probability = 0.05
    epsilon: Probability = 0.05
    softmax_lambda: PositiveFloat = 10.0
    bag_size: Annotated[int, msgspec.Meta(ge=2, le=64)] = 5
    cover_size: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    # gamma = scale * sqrt(examples): rewards are a fraction of a click, so the gaps it
    # weighs are small and the scale large
    squarecb_gamma_scale: PositiveFloat = 500.0
    # gamma grows as examples ** exponent (VW's default 0.5): 0 keeps it fixed, so a slot
    # explores as much after a million examples as after a thousand
    squarecb_gamma_exponent: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.0
    rnd_size: Annotated[int, msgspec.Meta(ge=1, le=64)] = 3

    def vw_args(self) -> list[str]:
        """The VW command-line arguments that select this explorer."""
        eps = ["--epsilon", repr(self.epsilon)]
        match self.strategy:
            case "greedy":  # VW's best; the floor, mixed in by the policy, explores
                return ["--epsilon", "0.0"]
            case "epsilon":
                return eps
            case "softmax":
                return ["--softmax", "--lambda", repr(self.softmax_lambda)]
            case "bag":
                return ["--bag", str(self.bag_size), *eps]
            case "cover":
                return ["--cover", str(self.cover_size), *eps]
            case "squarecb":
                return [
                    "--squarecb",
                    *("--gamma_scale", repr(self.squarecb_gamma_scale)),
                    *("--gamma_exponent", repr(self.squarecb_gamma_exponent)),
                ]
            case "rnd":
                return ["--rnd", str(self.rnd_size), *eps]
        raise AssertionError(f"unhandled strategy {self.strategy}")


class ChangeDetection(StrictSection, frozen=True):
    """Noticing that tastes moved (bandit.policies.change): when the treatment's mean reward
    over its last `window` learned events falls `z` standard errors below the mean before them, the
    exploration floor rises to `boost_floor` for the next `boost_events` learned events, so
    what the model misjudges now is tried again soon. `window = 0` turns it off."""

    window: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 3000
    z: Annotated[float, msgspec.Meta(ge=1.0, le=100.0)] = 5.0
    boost_floor: Probability = 0.3
    boost_events: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)] = 5000

    def __post_init__(self) -> None:
        if 0 < self.window < 100:
            raise ValueError("change_detection.window: 0 (off) or at least 100 events")


class RewardMapping(StrictSection, frozen=True):
    """Feedback to reward: weights per feedback type, summed per position, capped at `max`."""

    click: NonNegativeFloat = 0.5
    play: NonNegativeFloat = 1.0
    watch_minute: NonNegativeFloat = 0.0
    max: PositiveFloat = 1.0


class Exposure(StrictSection, frozen=True):
    """What a single-choice slot shows beyond what its policy prefers (bandit.policies.exposure).

    `floor`: the least probability of a candidate flagged `floor` in the request (a new or
    long-tail title), or served below `below_share` of the decisions it was offered in (by
    this replica, over its last `share_window` offers of the slot); serving then flags it
    in the logged event, so replay and the audit reproduce the pmf. `consistent_period_s`:
    a person's choice for a key is drawn with a uniform fixed for that period, so the same
    person sees the same artwork for a title on every visit in it (while the policy does
    not change); anonymous and unconsenting requests draw afresh."""

    floor: Probability = 0.0
    below_share: Probability = 0.0
    share_window: Annotated[int, msgspec.Meta(ge=100, le=10_000_000)] = 100_000
    consistent_period_s: PositiveFloat | None = None

    @property
    def active(self) -> bool:
        return self.floor > 0 or self.consistent_period_s is not None


class Shadow(StrictSection, frozen=True):
    """A candidate policy run in shadow (apprentice mode): it scores every treatment request
    beside the live policy, its pmfs are logged with the decision, and the learner teaches
    it from the same stream, but nobody is shown its choice until `/v1/admin/promote` makes
    it live. `policy` (default: the slot's) and `settings`, overrides of the learning
    settings as self-tuning takes them (`learning_rate=0.3`, `exploration.epsilon=0.1`).
    A slot whose `policy` is "default" with a VW shadow serves the editorial default while
    the bandit learns: no exposure risk."""

    policy: PolicyType | None = None
    settings: list[Annotated[str, msgspec.Meta(max_length=2000)]] = msgspec.field(
        default_factory=list
    )


class SlotConfig(StrictSection, frozen=True):
    """One slot of the page: what it decides, with which policy, and how it is rewarded."""

    kind: SlotKind
    policy: PolicyType = "vw"
    interactions: list[Annotated[str, msgspec.Meta(pattern=r"^[UCAIS]{2,3}$")]] = msgspec.field(
        default_factory=lambda: ["UA", "UI", "CA", "CI"]
    )
    lrq: list[Annotated[str, msgspec.Meta(pattern=r"^[UCAIS]{2}[0-9]{1,3}$")]] = msgspec.field(
        default_factory=list
    )
    learning_rate: PositiveFloat = 0.05  # VW -l (its own default, 0.5, is noisy on rare clicks)
    # VW --power_t: the rate falls as examples ** -decay (VW's default 0.5, which freezes an
    # old slot); 0 keeps it constant, so the newest evidence counts as much as the oldest
    learning_rate_decay: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.0
    # the most one logged choice weighs in learning (VW --clip_p 1 / cap): an explored
    # choice of probability p counts 1/p times, and one click at p = 0.001 would otherwise
    # outweigh a thousand decisions
    importance_weight_cap: Annotated[float, msgspec.Meta(ge=1.0, le=1e6)] = 3.0
    vw_args: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    exploration: Exploration = msgspec.field(default_factory=Exploration)
    select: Annotated[int, msgspec.Meta(ge=1, le=256)] = 10
    holdout_fraction: Probability = 0.05
    attribution_window_s: PositiveFloat = 1800.0
    reward: RewardMapping = msgspec.field(default_factory=RewardMapping)
    learn_control: bool = False
    exposure: Exposure = msgspec.field(default_factory=Exposure)
    change_detection: ChangeDetection = msgspec.field(default_factory=ChangeDetection)
    # a request whose person does not consent to personalization gets the editorial default,
    # not logged ("default"), or this slot's policy with no user features and no user hash,
    # logged as an anonymous visitor's ("context")
    unconsented: Literal["default", "context"] = "default"
    shadow: Shadow | None = None
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] | None = None

    def __post_init__(self) -> None:
        for term in self.interactions + self.lrq:
            unknown = set(term.rstrip("0123456789")) - set(NAMESPACES)
            assert not unknown, f"pattern let through {term!r}"
        try:
            tokens = shlex.split(self.vw_args)
        except ValueError as exc:
            raise ValueError(f"vw_args is not a valid argument string: {exc}") from None
        for name, pattern in _NAMED_OPTIONS.items():
            if any(pattern.match(token) for token in tokens):
                raise ValueError(f"vw_args sets what {name} sets: set {name} instead")
        if self.kind.ranked and self.exposure.active:
            raise ValueError("exposure: floors and consistent draws are for single-choice slots")
        if self.exposure.below_share > 0 and self.exposure.floor <= 0:
            raise ValueError("exposure.below_share needs exposure.floor, the probability it gives")
