"""The lift report: is the treatment better than the control holdout, per slot?

Intent-to-treat: every rewarded decision counts for the group it was assigned, whatever it
showed. The holdout randomises people, so people are the unit of the interval. To answer
in constant time however long the log, a group is kept as a `GroupTally`: its decisions
and reward summed into `UNIT_BUCKETS` buckets of people (a person's bucket is a fixed hash
of their `user_hash`; an anonymous decision, randomised on its own, is hashed by its id).
Sums are exact and add up across partitions and learners; a bucket is a union of
independent people, so an interval clustered by bucket is as valid as one clustered by
person (with a few hundred buckets it is nearly as tight).

A group's reward rate is its reward per decision. The lift is treatment / control - 1 with
a 95% interval and a two-sided p-value for "no lift". A sample-ratio check compares the
control share of decisions with the holdout fraction they were decided under (logged with
each decision; the slot's configured one for older events), clustered by bucket as the
rate: a share far from it (p < 0.001) means the assignment or the logging is broken, or the
treatment changes how many decisions people are shown, and the lift cannot be trusted.

Every slot's report also checks off-policy estimation against the holdout (see
`bandit.measurement.calibration`): the treatment group's importance-weighted reward of the default
policy, summed per bucket like the rewards, estimates what control measures.

The rewarded log holds impressed decisions only; when a slot's policy changes what gets
impressed (rows decide which titles show), the groups are compared among impressed
decisions, which the report says.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from bandit.config import Config
from bandit.contracts.events import OUTCOMES, RewardedEvent
from bandit.measurement import calibration
from bandit.measurement.sequential import ConfidenceSequence
from bandit.measurement.stats import Lift, Rate, json_ready, lift, ratio_rate
from bandit.measurement.tallies import (
    UNIT_BUCKETS,
    GroupTally,
    ShadowGain,
    SlotTallies,
    add,
    bucket_rate,
    merge,
    shadow_gain,
    tally,
    zeros,
)

SRM_ALPHA = 0.001
MIN_DECISIONS = 200  # decisions per group below which an interval is not worth much


@dataclass(frozen=True)
class GroupResult:
    decisions: int
    units: int  # buckets of people with a decision: the clusters of the interval
    rate: Rate  # reward per decision


@dataclass(frozen=True)
class Guardrail:
    """One outcome's rate per decision in each group and its lift. `flagged`: it falls
    significantly while the slot's reward rises significantly (a reward that pays for
    clicks the person does not follow up, say), by the always-valid sequences of both."""

    outcome: str
    treatment: Rate
    control: Rate
    lift: Lift
    flagged: bool


@dataclass(frozen=True)
class SlotLift:
    slot: str
    treatment: GroupResult
    control: GroupResult
    lift: Lift
    expected_control_share: float | None  # the holdout checked against; None: none known
    holdout_from: str  # "log" (the decisions carry it), "config", or "none"
    control_share: float  # of decisions
    srm_p_value: float
    warnings: list[str] = field(default_factory=list)
    # the default policy estimated from treatment against control's measured value
    calibration: list[calibration.Gap] = field(default_factory=list)
    guardrails: list[Guardrail] = field(default_factory=list)  # per outcome logged
    # the shadow policy against the live one, on the treatment decisions that logged it
    shadow: ShadowGain | None = None


def srm_p_value(control: np.ndarray, total: np.ndarray, expected_share: float) -> float:
    """Two-sided p-value of the control share of decisions, sum(control) / sum(total) over
    buckets, against `expected_share`, with the share's variance clustered by bucket (a
    person's decisions share a group). 1.0 when there is nothing to test."""
    share = ratio_rate(control, total)
    if not 0.0 < expected_share < 1.0 or not math.isfinite(share.low):
        return 1.0
    if share.std_error == 0.0:  # every bucket at exactly the same share
        return 1.0 if share.value == expected_share else 0.0
    z = (share.value - expected_share) / share.std_error
    return math.erfc(abs(z) / math.sqrt(2.0))


def _group(tally: GroupTally | None) -> tuple[GroupResult, np.ndarray]:
    if tally is None:
        tally = GroupTally()
    decisions = np.asarray(tally.decisions, dtype=float)
    rate = bucket_rate(tally.reward, tally.decisions)
    return GroupResult(int(decisions.sum()), rate.units, rate), decisions


def slot_lift(
    slot: str, groups: Mapping[str, GroupTally], holdout: float | None, holdout_from: str
) -> SlotLift:
    treatment, treated = _group(groups.get("treatment"))
    control, held = _group(groups.get("control"))
    decisions = treatment.decisions + control.decisions
    share = control.decisions / decisions if decisions else math.nan
    used = (treated + held) > 0
    p_value = srm_p_value(held[used], (treated + held)[used], holdout) if holdout else 1.0
    treated_tally = groups.get("treatment")
    shadow = None
    if treated_tally is not None and sum(treated_tally.shadow.decisions) > 0:
        shadow = shadow_gain(treated_tally)
    result = SlotLift(
        slot, treatment, control, lift(treatment.rate, control.rate), holdout, holdout_from,
        share, p_value, shadow=shadow,
    )  # fmt: skip
    result.calibration.extend(calibration_gaps(groups, control.rate))
    result.guardrails.extend(guardrails(groups, result.lift))
    for guard in result.guardrails:
        if guard.flagged:
            x = guard.lift.sequence
            result.warnings.append(
                f"guardrail: {guard.outcome} per decision falls {guard.lift.value:+.1%} "
                f"(always-valid [{x.low:+.1%}, {x.high:+.1%}]) while the reward rises "
                f"{result.lift.value:+.1%}: the policy wins on what the reward counts and "
                "loses on this; check the reward weights"
            )
    result.warnings.extend(calibration.warnings(result.calibration))
    for name, group in (("treatment", treatment), ("control", control)):
        if group.decisions < MIN_DECISIONS:
            result.warnings.append(
                f"only {group.decisions} decisions in {name}: the interval is rough "
                f"(at least {MIN_DECISIONS} per group make it trustworthy)"
            )
    if holdout is None:
        result.warnings.append(
            "no holdout to check the split against: the log does not carry it and the slot "
            "is not in the config"
        )
    elif p_value < SRM_ALPHA:
        result.warnings.append(
            f"sample-ratio mismatch: {share:.2%} of decisions in control, expected "
            f"{holdout:.2%} (p = {p_value:.1e}); the assignment or the logging is broken, or "
            "the treatment changes how many decisions are shown: do not trust the lift"
        )
    return result


def guardrails(groups: Mapping[str, GroupTally], primary: Lift) -> list[Guardrail]:
    """Each outcome's lift, over the decisions that logged outcomes, clustered by bucket."""
    treated, held = groups.get("treatment"), groups.get("control")
    if treated is None or held is None:
        return []
    rails = []
    for name in OUTCOMES:
        rates = [
            bucket_rate(group.outcomes.get(name, zeros()), group.outcomes.get("decisions", zeros()))
            for group in (treated, held)
        ]
        if not all(rate.impressions > 0 for rate in rates):
            continue
        change = lift(*rates)
        flagged = primary.sequence.low > 0 and change.sequence.high < 0
        rails.append(Guardrail(name, rates[0], rates[1], change, flagged))
    return rails


def calibration_gaps(groups: Mapping[str, GroupTally], control: Rate) -> list[calibration.Gap]:
    """IPS and SNIPS of the default policy from the treatment tally, each against control's
    rate, clustered by bucket: over the decisions where the log supports the default when
    both groups logged that, else over all. SNIPS divides by the mean weight of the first
    position, whose expectation is 1 (rows too: consistent, as SNIPS is)."""
    treated, held = groups.get("treatment"), groups.get("control")
    if treated is None or held is None:
        return []
    bounded = sum(treated.supported.decisions) > 0 and sum(held.supported.decisions) > 0
    sums = treated.supported if bounded else treated.default
    scope = "all decisions"
    if bounded:
        scope = calibration.supported_scope(sum(sums.decisions) / max(treated.total, 1))
        control = bucket_rate(held.supported.reward, held.supported.decisions)
    if not math.isfinite(control.low):
        return []
    effective = calibration.effective_rounds(sum(sums.mass), sum(sums.mass_square))
    weight = bucket_rate(sums.page_weight, sums.decisions)
    gaps = []
    for name, denominator in (("ips", sums.decisions), ("snips", sums.first_weight)):
        rate = bucket_rate(sums.reward, denominator, sums.decisions)
        if math.isfinite(rate.low):
            gaps.append(calibration.gap(
                name, rate.value, rate.std_error, control.value, control.std_error, effective,
                (weight.value, weight.std_error), bounded, scope, always_valid=True,
            ))  # fmt: skip
    return gaps


class RecentTallies:
    """Each slot's tallies over the last `window_s` seconds of decision time, kept as
    `slices` slices so that old decisions fall out a slice at a time: what the learner's
    calibration and guardrail metrics watch (a recent problem is not diluted by a long
    healthy past)."""

    def __init__(self, window_s: float, slices: int = 12):
        self.slice_s = window_s / slices
        self.slices = slices
        self._by_slot: dict[str, _RecentSlices] = {}
        self._newest: int | None = None  # the newest slice that took a decision

    def add(
        self,
        event: RewardedEvent,
        default: calibration.DefaultTerms | None = None,
        bucket: int | None = None,
    ) -> None:
        index = int(event.ts // self.slice_s)
        if self._newest is not None and index <= self._newest - self.slices:
            return  # older than the window
        if self._newest is None or index > self._newest:
            self._newest = index
            for kept in self._by_slot.values():
                kept.close_before(index, index - self.slices)
        slices = self._by_slot.setdefault(event.slot, _RecentSlices())
        add(slices.tallies_of(index), event, default, bucket)

    def groups(self, slot: str) -> dict[str, GroupTally]:
        """The slot's tallies over the window, merged; slices that fell out are dropped."""
        kept = self._by_slot.get(slot)
        if kept is None or self._newest is None:
            return {}
        kept.close_before(self._newest, self._newest - self.slices)
        return kept.merged()

    def lift(self, slot: str) -> SlotLift:
        """The slot's lift over the window, with its calibration and guardrails."""
        return slot_lift(slot, self.groups(slot), None, "none")


class _RecentSlices:
    """One slot's slices. Only those still taking decisions are kept as tallies; a closed
    slice is packed (msgpack, zlib) and its sums are merged once with the other closed ones.
    A slice's tallies are some 12,000 floats per group: as Python objects about 0.4 MB,
    packed a few tens of KB. Kept as objects, 12 slices grew a learner by some 26 MB over its
    first 6 hours at 3 slots, and every checkpoint merged all 12 again."""

    def __init__(self) -> None:
        self._open: dict[int, dict[str, GroupTally]] = {}
        self._closed: dict[int, bytes] = {}
        self._closed_sum: dict[str, GroupTally] | None = {}

    def tallies_of(self, index: int) -> dict[str, GroupTally]:
        """The slice's tallies, unpacked again if it was closed (a late decision)."""
        groups = self._open.get(index)
        if groups is None:
            packed = self._closed.pop(index, None)
            if packed is not None:
                self._closed_sum = None
            groups = self._open[index] = {} if packed is None else _unpack(packed)
        return groups

    def close_before(self, newest: int, oldest_dropped: int) -> None:
        """Pack the slices older than `newest`; drop those up to `oldest_dropped`."""
        for index in [i for i in self._closed if i <= oldest_dropped]:
            del self._closed[index]
            self._closed_sum = None
        for index in [i for i in self._open if i < newest]:
            groups = self._open.pop(index)
            if index > oldest_dropped:
                self._closed[index] = zlib.compress(_PACK.encode(groups), 1)
                if self._closed_sum is not None:
                    self._closed_sum = _merged([self._closed_sum, groups])

    def merged(self) -> dict[str, GroupTally]:
        if self._closed_sum is None:
            self._closed_sum = _merged(_unpack(packed) for packed in self._closed.values())
        return _merged([self._closed_sum, *self._open.values()])


_PACK = msgspec.msgpack.Encoder()
_UNPACK = msgspec.msgpack.Decoder(dict[str, GroupTally])


def _unpack(packed: bytes) -> dict[str, GroupTally]:
    return _UNPACK.decode(zlib.decompress(packed))


def _merged(parts: Iterable[dict[str, GroupTally]]) -> dict[str, GroupTally]:
    return merge({"": {"": groups}} for groups in parts).get("", {}).get("", {})


def lift_report(tallies: SlotTallies, config: Config) -> list[SlotLift]:
    """One `SlotLift` per slot and holdout period, in slot order. The split is checked
    against the holdout fraction the decisions were logged under; for decisions that do not
    carry it, against the slot's configured fraction."""
    report = []
    for slot in sorted(tallies):
        configured = config.slots.get(slot)
        for period, groups in sorted(tallies[slot].items()):
            if period:
                holdout, source = float(period), "log"
            elif configured is not None:
                holdout, source = configured.holdout_fraction, "config"
            else:
                holdout, source = None, "none"
            report.append(slot_lift(slot, groups, holdout, source))
    return report


def lift_over_time(
    events: Sequence[RewardedEvent], config: Config, points: int = 24
) -> list[tuple[float, list[SlotLift]]]:
    """The report as it stood at `points` moments evenly spread over the log's decision
    time (the decision time of the last event counted, the report then), for the cumulative
    lift a scorecard draws. The always-valid interval is the one to read on it: it holds
    at every one of these looks at once."""
    ordered = sorted(events, key=lambda e: e.ts)
    if not ordered:
        return []
    first, last = ordered[0].ts, ordered[-1].ts
    tallies: SlotTallies = {}
    out: list[tuple[float, list[SlotLift]]] = []
    start = 0
    for k in range(1, points + 1):
        until = first + (last - first) * k / points
        end = start
        while end < len(ordered) and (ordered[end].ts <= until or k == points):
            end += 1
        if end == start and out:
            continue
        tally(ordered[start:end], into=tallies)
        start = end
        out.append((ordered[end - 1].ts, lift_report(tallies, config)))
    return out


def table(report: Sequence[SlotLift]) -> str:
    lines = [f"{'slot':<12}{'group':<11}{'decisions':>11}  {'reward/decision (95% CI)':<30}"]
    for s in report:
        for name, group in (("treatment", s.treatment), ("control", s.control)):
            r = group.rate
            interval = f"{r.value:.4f} [{r.low:.4f}, {r.high:.4f}]" if r.units > 1 else "-"
            lines.append(f"{s.slot:<12}{name:<11}{group.decisions:>11,}  {interval}")
        x = s.lift
        if math.isfinite(x.low):
            p = "p < 0.001" if x.p_value < 0.001 else f"p = {x.p_value:.3f}"
            verdict = (
                f"lift {x.value:+.1%}; always-valid {_interval(x.sequence)}; "
                f"one look [{x.low:+.1%}, {x.high:+.1%}], {p}"
            )
            if not x.sequence.excludes_zero:
                verdict += f"; {_planning(x.needed, x.decisions)}"
        else:
            verdict = "lift: not enough data"
        expected = (
            f", expected {s.expected_control_share:.1%} ({s.holdout_from})"
            if s.expected_control_share
            else ""
        )
        lines.append(
            f"{'':<12}{verdict}; control share {s.control_share:.1%}{expected} "
            f"(SRM p = {s.srm_p_value:.2f})"
        )
        for guard in s.guardrails:
            x, t, c = guard.lift, guard.treatment, guard.control
            change = (
                f"{x.value:+.1%}, always-valid {_interval(x.sequence)}"
                if math.isfinite(x.low)
                else "-"
            )
            lines.append(
                f"{'':<12}guardrail {guard.outcome} per decision: treatment {t.value:.4f}, "
                f"control {c.value:.4f}, lift {change}" + (" FALLS" if guard.flagged else "")
            )
        for gap in s.calibration:
            lines.append(f"{'':<12}calibration {gap.describe()}")
        if s.shadow is not None:
            g = s.shadow
            lines.append(
                f"{'':<12}shadow: {g.shadow.value:.4f} (IPS) vs live {g.live.value:.4f} over "
                f"{g.live.impressions:,.0f} decisions, gain {g.gain.value:+.4f}, always-valid "
                f"[{g.sequence.low:+.4f}, {g.sequence.high:+.4f}]"
                + (
                    ": significant, /v1/admin/promote can make it live"
                    if g.significant
                    else f"; {_planning(g.needed, g.gain.impressions)}"
                )
            )
        lines += [f"{'':<12}warning: {w}" for w in s.warnings]
    return "\n".join(lines)


def _interval(sequence: ConfidenceSequence) -> str:
    return f"[{sequence.low:+.1%}, {sequence.high:+.1%}]"


def _planning(needed: float, decisions: float) -> str:
    """How many more decisions the effect as it stands would need to be detected."""
    if not math.isfinite(needed):
        return "no effect to detect yet"
    return f"at this effect about {max(needed - decisions, 0):,.0f} more decisions to detect it"


def to_dict(report: Sequence[SlotLift]) -> dict[str, Any]:
    """JSON-ready (undefined figures are null)."""
    slots = [dataclasses.asdict(s) for s in report]
    analysis = (
        f"intent-to-treat, people as units ({UNIT_BUCKETS} buckets); each figure has a "
        "fixed-horizon 95% interval (low, high, p_value: valid for one look) and an "
        "always-valid confidence sequence (sequence: valid however often it is looked at, "
        "what promotion and alerts read; docs/design.md, Anytime-valid inference)"
    )
    ready: dict[str, Any] = json_ready({"analysis": analysis, "slots": slots})
    return ready
