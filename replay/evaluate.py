"""One replay run: a log, targets and estimators in; estimates, diagnostics and warnings out.

Per slot of the log: the treatment group's rounds are the evaluation data (control
decisions are deterministic, so they support no other policy: they give the control
group's on-policy value and are otherwise left out). When a target must be trained, the
first `train_fraction` of events trains it and every target is evaluated on the rest, so
all rows of a table are comparable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from bandit.config import Config
from bandit.contracts.events import RewardedEvent
from bandit.measurement import calibration
from replay import estimators as est
from replay import holdout, pages, reward_model, slates
from replay.logs import ReplayLog
from replay.rejection import rejection_estimate, rejection_kept
from replay.results import PageResult, ReplayResult, Settings, SlotResult, TargetResult
from replay.rounds import Rounds, context_features
from replay.summed import plain
from replay.targets import Target, TargetError, parse_target

TOP_SEGMENTS = 8
LOGGER_TOLERANCE = 1e-6  # |logged - the logger's probability| beyond which it is not the logger
CURVE_POINTS = 40


def evaluate(
    log: ReplayLog, targets: list[Target], config: Config, settings: Settings, quiet: bool = True
) -> ReplayResult:
    if not log.events:
        raise est.EstimatorError(f"{log.source}: the log has no events")
    result = ReplayResult(log.source, len(log.events), log.duplicates, log.bad, settings, [])
    if log.duplicates:
        result.warnings.append(f"{log.duplicates} repeated decision ids were read once")
    present = sorted({e.slot for e in log.events})
    missing = [slot for slot in settings.slots if slot not in present]
    if settings.slots and len(missing) == len(settings.slots):
        raise est.EstimatorError(
            f"--slot {', '.join(missing)}: not in the log (its slots: {', '.join(present)})"
        )
    if settings.segment:
        _check_segment_present(log, settings.segment)
    for slot in settings.slots or present:
        if slot not in present:
            result.warnings.append(f"slot {slot}: not in the log")
            continue
        if slot not in config.slots:
            result.warnings.append(f"slot {slot}: not in the config, skipped")
            continue
        slot_events = [e for e in log.events if e.slot == slot]
        result.slots.append(_evaluate_slot(slot, slot_events, targets, config, settings, quiet))
    if not result.slots:
        raise est.EstimatorError("no slot of the log could be evaluated")
    return result


def _check_segment_present(log: ReplayLog, feature: str) -> None:
    """A segment feature no event has would give one "(none)" segment: a mistake to say."""
    require_segment(feature, segment_names(log.events, feature))


def segment_names(events: Iterable[RewardedEvent], feature: str) -> set[str]:
    """The names the events carry in the scope of `feature` (`user.x`: the user features),
    reading only until one carries `feature` itself ("group" is always there)."""
    scope, _, name = feature.partition(".")
    if feature == "group":
        return {name}
    seen: set[str] = set()
    for event in events:
        features = context_features(event, scope)
        seen.update(features)
        if name in features:
            break
    return seen


def require_segment(feature: str, names: set[str]) -> None:
    """Refuse `--segment feature` when no event has it, naming the features there are."""
    scope, _, name = feature.partition(".")
    if feature == "group" or name in names:
        return
    listed = ", ".join(f"{scope}.{n}" for n in sorted(names)) or f"no {scope} features at all"
    raise est.EstimatorError(f"--segment {feature}: no event of the log has it (it has: {listed})")


def _evaluate_slot(
    slot: str,
    slot_events: list[RewardedEvent],
    targets: list[Target],
    config: Config,
    settings: Settings,
    quiet: bool,
) -> SlotResult:
    treatment = [e for e in slot_events if e.group == "treatment"]
    control = [e for e in slot_events if e.group == "control"]
    applicable = [t for t in targets if t.applies_to(slot)]
    if not treatment:
        raise est.EstimatorError(f"slot {slot}: no treatment events to evaluate targets on")
    train, rounds = _train_and_evaluated(slot, treatment, applicable, settings)
    warnings = _propensity_warnings(rounds)
    q, estimators = _model_and_estimators(rounds, slot, applicable, config, settings, quiet,
                                          warnings)  # fmt: skip
    segment = rounds.segment(settings.segment) if settings.segment else None
    ranked = config.slots[slot].kind.ranked
    logged = {"treatment": rounds}
    if control:
        logged["control"] = _control_rounds(slot, control, None if train is None else rounds)
    logging_value, logging_by_position = _logged_values(logged, ranked, settings.confidence)
    gaps = []
    if control:
        gaps = _calibration(rounds, logged["control"], q, estimators, config, settings)
        warnings += calibration.warnings(gaps)
    logger = None
    if ranked and applicable:
        logger, note = _logger_rankings(rounds, config, settings, quiet)
        warnings += [note] if note else []
    results, page_results = [], []
    flagged = rounds.candidate_mask(lambda c: c.floor)  # the exposure floor's candidates
    exposure = {"shown": float(flagged[np.arange(len(rounds)), rounds.chosen].mean())}
    for target in applicable:
        enumerable = logger is not None and target.enumerates
        orderings, hook = slates.collector(rounds) if enumerable else (None, None)
        pmf = target.probabilities(train, rounds, quiet, hook)
        exposure[target.name] = float((pmf * flagged).sum(axis=1).mean())
        data = off_policy_data(rounds, pmf, q)
        results += _by_position(
            target.name, rounds, pmf, data, estimators, settings, ranked, segment
        )
        if ranked:
            slate = None if logger is None or orderings is None else (logger, orderings)
            page_results.append(
                _page_result(target.name, rounds, data, estimators, settings, slate)
            )
    return SlotResult(
        slot=slot, events=len(slot_events), treatment_rounds=len(rounds) + (len(train or [])),
        evaluated_rounds=len(rounds), train_events=len(train.events) if train else 0,
        control_events=len(control), logging_value=logging_value, targets=results,
        warnings=warnings, logging_by_position=logging_by_position, pages=page_results,
        calibration=gaps, flagged_exposure=exposure if flagged.any() else {},
    )  # fmt: skip


def _train_and_evaluated(
    slot: str, treatment: list[RewardedEvent], applicable: list[Target], settings: Settings
) -> tuple[Rounds | None, Rounds]:
    """The rounds a learning target trains on (None if none trains) and those evaluated."""
    rounds = Rounds.from_events(slot, treatment)
    if not any(t.trains for t in applicable):
        return None, rounds
    train, rounds = rounds.split(settings.train_fraction)
    if not len(rounds) or not len(train):
        raise est.EstimatorError(
            f"slot {slot}: {len(treatment)} events are too few to train on "
            f"{settings.train_fraction:.0%} and evaluate on the rest"
        )
    return train, rounds


def _model_and_estimators(
    rounds: Rounds,
    slot: str,
    applicable: list[Target],
    config: Config,
    settings: Settings,
    quiet: bool,
    warnings: list[str],
) -> tuple[np.ndarray | None, list[est.Estimator]]:
    """The reward model's predictions (None without one: no target, or --no-reward-model)
    and the estimators that can run with what there is."""
    q = None
    names = list(settings.estimators)
    if settings.reward_model and applicable:  # no target here, no model to fit
        q = reward_model.fit_predict(rounds, config.slots[slot], settings.seed, quiet)
    else:
        dropped = [e.name for e in est.make_estimators(names) if e.needs_model]
        names = [n for n in names if n not in dropped]
        if dropped:
            warnings.append(f"no reward model: {', '.join(dropped)} left out")
    return q, est.make_estimators(names, settings.max_weight, settings.switch_tau)


def _logged_values(
    logged: dict[str, Rounds], ranked: bool, confidence: float
) -> tuple[dict[str, est.Estimate], dict[str, list[est.Estimate]]]:
    """Each group's on-policy value (per event: per page for rows), and per position."""
    value = {
        group: est.mean_estimate("on_policy", _page_rewards(part), confidence)
        for group, part in logged.items()
    }
    by_position = {
        group: [
            est.mean_estimate("on_policy", part.reward[part.position == position], confidence)
            for position in sorted(set(part.position.tolist()))
        ]
        for group, part in logged.items()
    } if ranked else {}  # fmt: skip
    return value, by_position


def _by_position(
    name: str,
    rounds: Rounds,
    pmf: np.ndarray,
    data: est.OffPolicyData,
    estimators: list[est.Estimator],
    settings: Settings,
    ranked: bool,
    segment: np.ndarray | None,
) -> list[TargetResult]:
    """A target's results at each position (one for single-choice slots)."""
    kept = rejection_kept(rounds, pmf, settings.seed) if settings.rejection else None
    results = []
    for position in sorted(set(rounds.position.tolist())):
        mask = rounds.position == position
        result = _evaluate_target(
            name, position if ranked else None, rounds.select(mask), pmf[mask],
            data.select(mask), estimators, settings, None if segment is None else segment[mask],
        )  # fmt: skip
        if kept is not None:
            result.rejection = rejection_estimate(rounds.reward[mask & kept], settings.confidence)
        results.append(result)
    return results


def _calibration(
    rounds: Rounds,
    control: Rounds,
    q: np.ndarray | None,
    estimators: list[est.Estimator],
    config: Config,
    settings: Settings,
) -> list[calibration.Gap]:
    """The check against the holdout (`replay.holdout`): the default policy's value from the
    treatment rounds against control's measured value (the page value for rows)."""
    pmf = parse_target("default", config, settings.seed).probabilities(None, rounds, True)
    sums = holdout.holdout_sums(
        rounds, off_policy_data(rounds, pmf, q), holdout.terms(rounds.events),
        holdout.terms(control.events), estimators,
    )  # fmt: skip
    return holdout.gaps(sums, plain(_page_rewards(control)), settings.confidence)


def _logger_rankings(
    rounds: Rounds, config: Config, settings: Settings, quiet: bool
) -> tuple[list[slates.Rankings] | None, str | None]:
    """Every page's orderings under the logger (`settings.logger`), once it reproduces the
    logged propensities; else None and why the slate estimators that need it are left out."""
    left_out = "independent and pseudo-inverse page values left out"
    count = max(slates.ranking_count(len(e.candidates), len(e.chosen)) for e in rounds.events)
    if count > settings.max_rankings:
        return None, (
            f"{left_out}: a page has {count:,} orderings, more than --max-rankings "
            f"{settings.max_rankings:,} to enumerate"
        )
    rankings, hook = slates.collector(rounds)
    try:
        logger = parse_target(settings.logger, config, settings.seed)
        if logger.trains or not logger.applies_to(rounds.slot):
            raise TargetError(f"{settings.logger}: not a fixed policy of slot {rounds.slot}")
        pmf = logger.probabilities(None, rounds, quiet, hook)
    except TargetError as exc:
        return None, f"{left_out}: the logger is unknown ({exc}); name it with --logger SPEC"
    given = pmf[np.arange(len(rounds)), rounds.chosen]
    wrong = np.flatnonzero(np.abs(given - rounds.propensity) > LOGGER_TOLERANCE)
    if len(wrong):
        i = int(wrong[0])
        return None, (
            f"{left_out}: --logger {settings.logger} is not the logger: it gives "
            f"{len(wrong):,} of {len(rounds):,} rounds another probability (decision "
            f"{rounds.events[rounds.event_index[i]].decision_id} at position "
            f"{rounds.position[i]}: logged {rounds.propensity[i]:.6g}, it gives {given[i]:.6g})"
        )
    return slates.complete(rankings), None


def _page_result(
    name: str,
    rounds: Rounds,
    data: est.OffPolicyData,
    estimators: list[est.Estimator],
    settings: Settings,
    slate: tuple[list[slates.Rankings], list[slates.Rankings | None]] | None,
) -> PageResult:
    def interval(label: str, pieces: est.Pieces) -> est.Estimate:
        return est.interval(label, pieces, settings.confidence, settings.bootstrap, settings.seed)

    weight = pages.page_weight(rounds, data.target_chosen / data.propensity)
    estimates = [interval(e.name, pages.by_page(e.pieces(data), rounds)) for e in estimators]
    estimates += [
        interval("standard_ips", pages.standard(rounds, weight)),
        interval("standard_snips", pages.standard(rounds, weight, normalised=True)),
    ]
    assumptions = {e.name: pages.ASSUMPTIONS["reward-interaction"] for e in estimators}
    assumptions |= dict.fromkeys(("standard_ips", "standard_snips"), pages.ASSUMPTIONS["standard"])
    if slate is not None:
        logger, target = slate[0], slates.complete(slate[1])
        for normalised, suffix in ((False, "ips"), (True, "snips")):
            estimates.append(interval(
                f"independent_{suffix}", slates.independent(rounds, logger, target, normalised)
            ))  # fmt: skip
            assumptions[f"independent_{suffix}"] = slates.ASSUMPTIONS["independent"]
        for normalised, label in ((False, "pseudo_inverse"), (True, "pseudo_inverse_snips")):
            estimates.append(
                interval(label, slates.pseudo_inverse(rounds, logger, target, normalised))
            )
            assumptions[label] = slates.ASSUMPTIONS["pseudo-inverse"]
    return PageResult(
        name, estimates, assumptions, est.effective_sample_size(weight), float(weight.mean())
    )


def _evaluate_target(
    name: str,
    position: int | None,
    rounds: Rounds,
    pmf: np.ndarray,
    data: est.OffPolicyData,
    estimators: list[est.Estimator],
    settings: Settings,
    segment: np.ndarray | None,
) -> TargetResult:
    weights = data.weights
    estimates = [
        e.interval(data, settings.confidence, settings.bootstrap, settings.seed) for e in estimators
    ]
    result = TargetResult(
        target=name,
        position=position,
        estimates=estimates,
        effective_sample_size=est.effective_sample_size(weights),
        weights={
            "mean": float(weights.mean()),
            "p50": float(np.quantile(weights, 0.5)),
            "p99": float(np.quantile(weights, 0.99)),
            "max": float(weights.max()),
        },
        weight_sample=_sample(weights, settings.seed),
        curve=_snips_curve(weights, data.reward),
    )
    result.warnings += _support_warnings(rounds, pmf, result.effective_sample_size)
    if segment is not None:
        values, counts = np.unique(segment, return_counts=True)
        for value in values[np.argsort(-counts)][:TOP_SEGMENTS]:
            part = data.select(segment == value)
            result.segments[str(value)] = [
                e.interval(part, settings.confidence) for e in estimators if len(part) > 1
            ]
    return result


def off_policy_data(rounds: Rounds, pmf: np.ndarray, q: np.ndarray | None) -> est.OffPolicyData:
    """The estimators' arrays for `rounds`, each round weighted for the rows above it too
    (`Rounds.prefix_product`), so `rounds` are whole events: select afterwards."""
    target_chosen = pmf[np.arange(len(rounds)), rounds.chosen]
    return est.OffPolicyData(
        reward=rounds.reward, propensity=rounds.propensity, target_chosen=target_chosen,
        chosen=rounds.chosen, target=pmf, q=q,
        prefix_weight=rounds.prefix_product(target_chosen / rounds.propensity),
    )  # fmt: skip


def _control_rounds(slot: str, control: list[RewardedEvent], evaluated: Rounds | None) -> Rounds:
    """The control group's rounds over the same span of time as the evaluation: the span of
    the `evaluated` rounds when a target trains on the log's first part, else all of them."""
    start = min(e.ts for e in evaluated.events) if evaluated and evaluated.events else -math.inf
    return Rounds.from_events(slot, [e for e in control if e.ts >= start])


def _page_rewards(rounds: Rounds) -> np.ndarray:
    """Each event's total reward (a page's, for rows): the sum over its rounds."""
    if not len(rounds):
        return np.zeros(1)
    return np.bincount(rounds.event_index, weights=rounds.reward, minlength=len(rounds.events))


def _propensity_warnings(rounds: Rounds) -> list[str]:
    warnings = []
    deterministic = int(np.sum((rounds.propensity >= 1.0) & (rounds.choices_left() > 1)))
    if deterministic:
        warnings.append(
            f"{deterministic} rounds were logged with probability 1 among several candidates: "
            "a target that chooses differently there cannot be evaluated on them"
        )
    tiny = int(np.sum(rounds.propensity < 1e-3))
    if tiny:
        warnings.append(f"{tiny} rounds have propensities below 0.001 (weights above 1,000)")
    return warnings


def _support_warnings(rounds: Rounds, pmf: np.ndarray, ess: float) -> list[str]:
    """Mass on actions the log never chose, and estimates resting on few rounds."""
    warnings = []
    unsupported = rounds.unsupported_share(pmf)
    if unsupported > 0.01:
        warnings.append(
            f"{unsupported:.1%} of the target's probability is on candidates the log never "
            "chose: the estimates cannot see what those choices would earn"
        )
    if ess < min(100.0, 0.01 * len(rounds)):
        warnings.append(f"effective sample size {ess:.0f}: the estimates rest on few rounds")
    return warnings


def _sample(weights: np.ndarray, seed: int, size: int = 20_000) -> list[float]:
    kept = (
        weights
        if len(weights) <= size
        else np.random.default_rng(seed).choice(weights, size, replace=False)
    )
    result: list[float] = kept.tolist()
    return result


def _snips_curve(weights: np.ndarray, reward: np.ndarray) -> list[tuple[int, float]]:
    """SNIPS over the first k rounds, at about CURVE_POINTS values of k."""
    numerator, denominator = np.cumsum(weights * reward), np.cumsum(weights)
    points = np.unique(np.linspace(1, len(weights), CURVE_POINTS).astype(int))
    return [
        (int(k), float(numerator[k - 1] / denominator[k - 1]))
        for k in points
        if denominator[k - 1] > 0
    ]
