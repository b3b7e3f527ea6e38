"""The lift report: is the treatment better than the control holdout, per slot?

Intent-to-treat: every rewarded decision counts for the group it was assigned, whatever it
showed. The holdout randomises people, so people are the unit: a group's reward rate is
its reward per decision, with an interval clustered by `user_hash` (an anonymous decision,
randomised on its own, is its own unit). The lift is treatment / control - 1 with a 95%
interval and a two-sided p-value for "no lift". A sample-ratio check compares the share of
people in control with the slot's configured holdout: a split far from it (chi-square
p < 0.001) means the assignment or the logging is broken, and the lift cannot be trusted.

The rewarded log holds impressed decisions only; when a slot's policy changes what gets
impressed (rows decide which titles show), the groups are compared among impressed
decisions, which the report says.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bandit.config import Config
from bandit.events import RewardedEvent
from bandit.stats import Lift, Rate, json_ready, lift, ratio_rate

SRM_ALPHA = 0.001
MIN_UNITS = 100  # people per group below which an interval is not worth much


@dataclass(frozen=True)
class GroupResult:
    decisions: int
    people: int  # distinct user_hash, plus one per anonymous decision
    rate: Rate  # reward per decision


@dataclass(frozen=True)
class SlotLift:
    slot: str
    treatment: GroupResult
    control: GroupResult
    lift: Lift
    expected_control_share: float | None  # the configured holdout; None: slot not configured
    control_share: float  # of people
    srm_p_value: float
    warnings: list[str] = field(default_factory=list)


def srm_p_value(control: int, total: int, expected_share: float) -> float:
    """Chi-square goodness of fit (1 degree of freedom) of `control` of `total` units
    against the expected control share; 1.0 when there is nothing to test."""
    if total == 0 or not 0.0 < expected_share < 1.0:
        return 1.0
    expected = np.array([expected_share, 1.0 - expected_share]) * total
    observed = np.array([control, total - control])
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    return math.erfc(math.sqrt(chi2 / 2.0))


def _group(events: Sequence[RewardedEvent]) -> GroupResult:
    reward: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for event in events:
        unit = event.user_hash or f"anonymous:{event.decision_id}"
        reward[unit] += event.reward
        count[unit] += 1
    units = list(reward)
    rate = ratio_rate(
        np.array([reward[u] for u in units]), np.array([count[u] for u in units], dtype=float)
    )
    return GroupResult(decisions=len(events), people=len(units), rate=rate)


def slot_lift(slot: str, events: Sequence[RewardedEvent], holdout: float | None) -> SlotLift:
    treatment = _group([e for e in events if e.group == "treatment"])
    control = _group([e for e in events if e.group == "control"])
    people = treatment.people + control.people
    share = control.people / people if people else math.nan
    p_value = srm_p_value(control.people, people, holdout) if holdout is not None else 1.0
    result = SlotLift(
        slot, treatment, control, lift(treatment.rate, control.rate), holdout, share, p_value
    )
    for name, group in (("treatment", treatment), ("control", control)):
        if group.people < MIN_UNITS:
            result.warnings.append(
                f"only {group.people} people in {name}: the interval is rough "
                f"(at least {MIN_UNITS} per group make it trustworthy)"
            )
    if holdout is None:
        result.warnings.append("slot not in the config: no holdout to check the split against")
    elif p_value < SRM_ALPHA:
        result.warnings.append(
            f"sample-ratio mismatch: {share:.2%} of people in control, configured "
            f"{holdout:.2%} (p = {p_value:.1e}); assignment or logging is broken, "
            "do not trust the lift"
        )
    return result


def lift_report(events: Iterable[RewardedEvent], config: Config) -> list[SlotLift]:
    """One `SlotLift` per slot in the log, in slot order."""
    by_slot: dict[str, list[RewardedEvent]] = defaultdict(list)
    for event in events:
        by_slot[event.slot].append(event)
    report = []
    for slot in sorted(by_slot):
        configured = config.slots.get(slot)
        holdout = configured.holdout_fraction if configured is not None else None
        report.append(slot_lift(slot, by_slot[slot], holdout))
    return report


def table(report: Sequence[SlotLift]) -> str:
    lines = [
        f"{'slot':<12}{'group':<11}{'people':>8}{'decisions':>11}  {'reward/decision (95% CI)':<30}"
    ]
    for s in report:
        for name, group in (("treatment", s.treatment), ("control", s.control)):
            r = group.rate
            interval = f"{r.value:.4f} [{r.low:.4f}, {r.high:.4f}]" if r.units > 1 else "-"
            lines.append(
                f"{s.slot:<12}{name:<11}{group.people:>8,}{group.decisions:>11,}  {interval}"
            )
        x = s.lift
        if math.isfinite(x.low):
            p = "p < 0.001" if x.p_value < 0.001 else f"p = {x.p_value:.3f}"
            verdict = f"lift {x.value:+.1%} [{x.low:+.1%}, {x.high:+.1%}], {p}"
        else:
            verdict = "lift: not enough data"
        expected = (
            f", configured {s.expected_control_share:.1%}" if s.expected_control_share else ""
        )
        lines.append(
            f"{'':<12}{verdict}; control share {s.control_share:.1%}{expected} "
            f"(SRM p = {s.srm_p_value:.2f})"
        )
        lines += [f"{'':<12}warning: {w}" for w in s.warnings]
    return "\n".join(lines)


def to_dict(report: Sequence[SlotLift]) -> dict[str, Any]:
    """JSON-ready (undefined figures are null)."""
    slots = [dataclasses.asdict(s) for s in report]
    return json_ready({"analysis": "intent-to-treat, people as units", "slots": slots})
