"""What a replay is asked (`Settings`) and what it answers: per slot, each target's
estimates at each position, page values for ranked slots, the logged groups' own values,
the calibration gaps, warnings; the shapes the report, the JSON output and tests read."""

from __future__ import annotations

from dataclasses import dataclass, field

from bandit.measurement import calibration
from replay import estimators as est


@dataclass
class Settings:
    estimators: tuple[str, ...] = est.NAMES
    confidence: float = 0.95
    bootstrap: int = 200
    seed: int = 0
    train_fraction: float = 0.5  # used only when a target trains
    reward_model: bool = True
    max_weight: float = 20.0
    switch_tau: float = 20.0
    segment: str | None = None
    rejection: bool = False
    slots: tuple[str, ...] = ()  # empty: every slot in the log
    logger: str = "logged"  # ranked slots: the target spec that reproduces the logger
    max_rankings: int = 1000  # ranked slots: the most orderings a page may have to enumerate


@dataclass
class TargetResult:
    target: str
    position: int | None  # rows: the position; None for a single-choice slot
    estimates: list[est.Estimate]
    effective_sample_size: float
    weights: dict[str, float]  # mean, p50, p99, max
    weight_sample: list[float]  # for the report's histogram (at most 20,000)
    curve: list[tuple[int, float]]  # SNIPS over the rounds so far, for learning targets
    segments: dict[str, list[est.Estimate]] = field(default_factory=dict)
    rejection: est.Estimate | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class PageResult:
    """A ranked slot's whole-page value under one target: each estimator's position values
    summed (reward-interaction) and slate IPS (standard), with intervals clustered by page."""

    target: str
    estimates: list[est.Estimate]  # named "<estimator>" or "standard_ips"/"standard_snips"
    assumptions: dict[str, str]  # estimator -> what it assumes of the page's rewards
    standard_effective_pages: float  # the ESS of the page weights of slate IPS
    mean_page_weight: float  # 1 in expectation: far below, most of the weight is unseen


@dataclass
class SlotResult:
    slot: str
    events: int
    treatment_rounds: int
    evaluated_rounds: int
    train_events: int
    control_events: int
    # group -> on-policy mean reward (evaluated part): per event, i.e. per page for rows
    logging_value: dict[str, est.Estimate]
    targets: list[TargetResult]
    warnings: list[str] = field(default_factory=list)
    # rows: group -> on-policy mean reward at each position (empty for single-choice slots)
    logging_by_position: dict[str, list[est.Estimate]] = field(default_factory=dict)
    pages: list[PageResult] = field(default_factory=list)  # ranked slots: per target
    # each estimator's value of the default policy against control's (empty: no control)
    calibration: list[calibration.Gap] = field(default_factory=list)
    # when the log has candidates flagged `floor`: "shown" (the log) and each target -> the
    # share of decisions' probability on them (the exposure floor's effect, docs/data-science.md)
    flagged_exposure: dict[str, float] = field(default_factory=dict)


@dataclass
class ReplayResult:
    source: str
    events: int
    duplicates: int
    bad_lines: list[str]
    settings: Settings
    slots: list[SlotResult]
    warnings: list[str] = field(default_factory=list)
