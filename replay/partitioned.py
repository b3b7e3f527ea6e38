"""Replay of a partitioned Parquet log, one partition at a time, here or on a Dask cluster.

Every estimate is a ratio of sums of per-round columns (`replay.moments`), so each
partition's sums are computed where the partition is (`partition_sums`: read its columns,
score the targets, take the sums) and merged by addition, in partition order, where the run
was started. The engine only decides where partitions are computed; the numbers do not
depend on it: `--engine local` (this process, one partition after another) and `--engine
dask` (a local cluster) or `--engine tcp://scheduler:8786` (a running one) give the same
estimates, to the last bit.

Dask distributed is the engine because it is plain Python (pip-installable, no JVM, no
object store to run), it starts a local cluster of worker processes in under a second for
tests and laptops, and the same code runs on any cluster a `dask-scheduler` fronts (Kubernetes,
YARN, SLURM, cloud VMs through dask's deployers).

What a partitioned replay leaves out, because it needs the whole log at once: targets that
read the log in order (thompson, train:, learn:), rejection sampling, the independent and
pseudo-inverse page values, weight quantiles and the learning curve. The check against the
holdout (`replay.holdout`), the segments (`--segment`) and the exposure of floor-flagged
candidates are made from sums too. The bootstrap resamples within each partition, and the
reward model of DM and the DR family is cross-fitted within each partition.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

from bandit.config import Config
from bandit.measurement import calibration
from replay import estimators as est
from replay import holdout, pages, reward_model
from replay.columnar import Partition, partition_paths, read_partition
from replay.engines import mapper
from replay.evaluate import TOP_SEGMENTS, off_policy_data, require_segment, segment_names
from replay.moments import Moments
from replay.progress import Progress
from replay.results import PageResult, ReplayResult, Settings, SlotResult, TargetResult
from replay.rounds import Rounds
from replay.summed import Columns, Summed, plain
from replay.targets import TargetError, parse_target

LEFT_OUT = (
    "a partitioned replay leaves out rejection sampling, the independent and pseudo-inverse "
    "page values and weight quantiles; its bootstrap resamples within each partition"
)


class _Summable(Protocol):
    """Sums that merge by `+` (two partitions' sums of the same thing)."""

    def __add__(self: S, other: S, /) -> S: ...


S = TypeVar("S", bound=_Summable)
K = TypeVar("K")


@dataclass
class SlotSums:
    """One slot's sums over some partitions."""

    events: int = 0
    control_events: int = 0
    treatment_rounds: int = 0
    positions: dict[int, Summed] = field(default_factory=dict)
    pages: Summed | None = None  # ranked slots
    logged: dict[str, Moments] = field(default_factory=dict)  # group -> page rewards
    logged_positions: dict[tuple[str, int], Moments] = field(default_factory=dict)
    model_estimators: bool = True  # False: no reward model, DM and the DR family left out
    calibration: holdout.CalibrationSums | None = None
    segments: dict[tuple[int, str], Summed] = field(default_factory=dict)  # (position, value)
    # over the rounds of partitions with candidates flagged `floor`: the flagged candidates'
    # probability summed, as shown ("shown") and under each target (the single-file
    # replay's exposure shares, once divided by every treatment round)
    exposure: dict[str, float] = field(default_factory=dict)
    # the names in the --segment feature's scope the events carry: to say when none has it
    segment_names: set[str] = field(default_factory=set)

    def __add__(self, other: SlotSums) -> SlotSums:
        return SlotSums(
            self.events + other.events,
            self.control_events + other.control_events,
            self.treatment_rounds + other.treatment_rounds,
            _merged(self.positions, other.positions),
            _either(self.pages, other.pages),
            _merged(self.logged, other.logged),
            _merged(self.logged_positions, other.logged_positions),
            self.model_estimators and other.model_estimators,
            _either(self.calibration, other.calibration),
            _merged(self.segments, other.segments),
            _merged(self.exposure, other.exposure),
            self.segment_names | other.segment_names,
        )  # fmt: skip


@dataclass
class PartitionSums:
    """Per slot, the sums of one or more partitions."""

    slots: dict[str, SlotSums]
    events: int
    duplicates: int

    def __add__(self, other: PartitionSums) -> PartitionSums:
        return PartitionSums(
            _merged(self.slots, other.slots),
            self.events + other.events,
            self.duplicates + other.duplicates,
        )


def check_settings(specs: list[str], config: Config, settings: Settings) -> None:
    """What a partitioned replay cannot do, refused before any partition is read."""
    if settings.rejection:
        raise est.EstimatorError("--rejection needs the whole log: replay a single file for it")
    if settings.segment:
        Rounds.check_segment(settings.segment)
    for spec in specs:
        if parse_target(spec, config, settings.seed).sequential:
            raise TargetError(
                f"{spec}: trains on the log's first part or learns as it goes, which a "
                "partitioned replay cannot do one partition at a time; use a single file"
            )


def partition_sums(
    path: str, index: int, specs: list[str], config: Config, settings: Settings
) -> PartitionSums:
    """One partition's sums: its columns read, each slot's targets scored, the estimators'
    columns summed (bootstrap and reward model seeded by the run's seed and `index`)."""
    part = read_partition(path)
    slots = {}
    for slot in part.slots:
        if (settings.slots and slot not in settings.slots) or slot not in config.slots:
            continue
        slots[slot] = _slot_sums(part, slot, specs, config, settings, index)
    return PartitionSums(slots, len(part.table), part.duplicates)


def _slot_sums(
    part: Partition, slot: str, specs: list[str], config: Config, settings: Settings, index: int
) -> SlotSums:
    seed = np.random.SeedSequence([settings.seed, index])
    treatment = part.rounds(slot, "treatment")
    control = part.rounds(slot, "control")
    out = SlotSums(
        events=len(treatment.events) + len(control.events),
        control_events=len(control.events),
        treatment_rounds=len(treatment),
    )
    _add_logged(out, {"treatment": treatment, "control": control})
    if settings.segment:
        # chained, not listed: control's events are decoded only if treatment's lack it
        both = itertools.chain(treatment.events, control.events)
        out.segment_names = segment_names(both, settings.segment)
    targets = [t for t in (parse_target(s, config, settings.seed) for s in specs)
               if t.applies_to(slot)]  # fmt: skip
    if not len(treatment):
        return out
    q = None
    if settings.reward_model and targets:
        model_seed = int(np.random.SeedSequence([settings.seed, index, 1]).generate_state(1)[0])
        q = reward_model.fit_predict(treatment, config.slots[slot], model_seed)
    names = [n for n in settings.estimators if q is not None or not _needs_model(n)]
    out.model_estimators = q is not None
    estimators = est.make_estimators(names, settings.max_weight, settings.switch_tau)
    default = parse_target("default", config, settings.seed).probabilities(None, treatment, True)
    out.calibration = holdout.holdout_sums(
        treatment, off_policy_data(treatment, default, q),
        part.default_terms(slot, "treatment"), part.default_terms(slot, "control"), estimators,
    )  # fmt: skip
    flagged = None
    if treatment.floored.any():  # the events are decoded for which candidates they are
        flagged = treatment.candidate_mask(lambda c: c.floor)
        out.exposure["shown"] = float(flagged[np.arange(len(treatment)), treatment.chosen].sum())
    if not targets:
        return out
    columns = _TargetColumns(treatment, config.slots[slot].kind.ranked, settings.segment)
    for target in targets:
        pmf = target.probabilities(None, treatment, True)
        if flagged is not None:
            out.exposure[target.name] = float((pmf * flagged).sum())
        columns.add(target.name, off_policy_data(treatment, pmf, q), estimators)
    columns.summed_into(out, settings.bootstrap, seed)
    return out


def _add_logged(out: SlotSums, groups: dict[str, Rounds]) -> None:
    """Each group's on-policy reward: per page, and per position."""
    for group, rounds in groups.items():
        if len(rounds):
            page = np.bincount(rounds.event_index, weights=rounds.reward,
                               minlength=len(rounds.events))  # fmt: skip
            out.logged[group] = plain(page)
            for position in np.unique(rounds.position).tolist():
                at = rounds.reward[rounds.position == position]
                out.logged_positions[(group, position)] = plain(at)


class _TargetColumns:
    """The estimators' columns of every target over a slot's treatment rounds: per
    position, per segment value and, for ranked slots, per page."""

    def __init__(self, treatment: Rounds, ranked: bool, segment: str | None):
        self.treatment = treatment
        self.ranked = ranked
        self.positions = np.unique(treatment.position).tolist()
        self.segment = _segment(treatment, segment)
        self.by_segment: dict[tuple[int, str], Columns] = {}
        self.by_position = {position: Columns() for position in self.positions}
        self.by_page = Columns()
        self.max_weight: dict[int, dict[str, float]] = {p: {} for p in self.positions}

    def add(self, name: str, data: est.OffPolicyData, estimators: list[est.Estimator]) -> None:
        treatment, segment = self.treatment, self.segment
        for position in self.positions:
            mask = treatment.position == position
            chosen = data.select(mask)
            _add_columns(self.by_position[position], name, chosen, estimators)
            self.max_weight[position][name] = float(chosen.weights.max())
            if segment is None:
                continue
            for value in np.unique(segment[mask]).tolist():
                in_segment = self.by_segment.setdefault((position, value), Columns())
                _add_columns(in_segment, name, chosen.select(segment[mask] == value), estimators)
        if self.ranked:
            by_page = self.by_page
            weight = pages.page_weight(treatment, data.target_chosen / data.propensity)
            by_page.add_weights(name, weight)
            for estimator in estimators:
                by_page.add((name, estimator.name),
                            pages.by_page(estimator.pieces(data), treatment))  # fmt: skip
            by_page.add((name, "standard_ips"), pages.standard(treatment, weight))
            by_page.add((name, "standard_snips"), pages.standard(treatment, weight, True))

    def summed_into(self, out: SlotSums, bootstrap: int, seed: np.random.SeedSequence) -> None:
        for position, columns in self.by_position.items():
            out.positions[position] = Summed(
                columns.moments(bootstrap, seed), columns.layouts, columns.weights,
                self.max_weight[position],
            )  # fmt: skip
        for key, columns in self.by_segment.items():
            out.segments[key] = Summed(
                columns.moments(0, seed), columns.layouts, columns.weights, {}
            )
        if self.ranked:
            by_page = self.by_page
            out.pages = Summed(
                by_page.moments(bootstrap, seed), by_page.layouts, by_page.weights, {}
            )


def _add_columns(
    columns: Columns, name: str, data: est.OffPolicyData, estimators: list[est.Estimator]
) -> None:
    columns.add_weights(name, data.weights)
    for estimator in estimators:
        columns.add((name, estimator.name), estimator.pieces(data))


MAX_SEGMENT_VALUES = 10_000  # per partition: each value's sums are kept until the merge


def _segment(treatment: Rounds, feature: str | None) -> np.ndarray | None:
    """Each round's segment (decoding the partition's events), or None without --segment."""
    if feature is None:
        return None
    segment = treatment.segment(feature)
    distinct = len(set(segment.tolist()))
    if distinct > MAX_SEGMENT_VALUES:
        raise est.EstimatorError(
            f"--segment {feature}: {distinct:,} values in one partition, more than "
            f"{MAX_SEGMENT_VALUES:,}: segment by a feature with fewer values"
        )
    return segment


def result(source: str, merged: PartitionSums, config: Config, settings: Settings) -> ReplayResult:
    """The merged sums as a replay result, for the same report as a single file's."""
    out = ReplayResult(source, merged.events, merged.duplicates, [], settings, [], [LEFT_OUT])
    if merged.duplicates:
        out.warnings.append(f"{merged.duplicates} repeated decision ids were read once")
    for slot in settings.slots:
        if slot not in merged.slots:
            out.warnings.append(f"slot {slot}: not in the log")
    for slot, sums in sorted(merged.slots.items()):
        if not sums.treatment_rounds:
            raise est.EstimatorError(f"slot {slot}: no treatment events to evaluate targets on")
        out.slots.append(_slot_result(slot, sums, config, settings))
    if not out.slots:
        raise est.EstimatorError("no slot of the log could be evaluated")
    if settings.segment:
        require_segment(settings.segment,
                        set().union(*(s.segment_names for s in merged.slots.values())))  # fmt: skip
    return out


def _slot_result(slot: str, sums: SlotSums, config: Config, settings: Settings) -> SlotResult:
    confidence = settings.confidence
    ranked = config.slots[slot].kind.ranked
    logging_value = {
        group: est.estimate("on_policy", m, [(0, None)], confidence)
        for group, m in sums.logged.items()
    }
    by_position = {
        group: [est.estimate("on_policy", m, [(0, None)], confidence)
                for (g, _), m in sorted(sums.logged_positions.items()) if g == group]
        for group in sums.logged
    } if ranked else {}  # fmt: skip
    warnings = [] if sums.model_estimators else ["no reward model: DM and the DR family left out"]
    gaps = []
    if sums.calibration is not None and sums.control_events:
        gaps = holdout.gaps(sums.calibration, sums.logged["control"], confidence)
    warnings += calibration.warnings(gaps)
    targets = _target_results(sums, ranked, confidence)
    page_results = _page_results(sums.pages, confidence) if sums.pages is not None else []
    return SlotResult(
        slot=slot, events=sums.events, treatment_rounds=sums.treatment_rounds,
        evaluated_rounds=sums.treatment_rounds, train_events=0,
        control_events=sums.control_events, logging_value=logging_value, targets=targets,
        warnings=warnings, logging_by_position=by_position, pages=page_results,
        calibration=gaps,
        flagged_exposure={k: v / sums.treatment_rounds for k, v in sums.exposure.items()},
    )  # fmt: skip


def replay_partitioned(
    directory: str,
    specs: list[str],
    config: Config,
    settings: Settings,
    engine: str = "local",
    workers: int = 2,
    quiet: bool = True,
) -> ReplayResult:
    """Estimate `specs` over every partition of `directory` on `engine` (see the module
    docstring) and merge the partitions' sums in partition order."""
    check_settings(specs, config, settings)
    paths = [str(p) for p in partition_paths(directory)]
    progress = Progress(len(paths), f"replaying {len(paths)} partitions", quiet=quiet)
    with mapper(engine, workers) as map_:
        parts: list[PartitionSums] = map_(
            partition_sums, paths, (specs, config, settings), progress.update
        )
    progress.close()
    merged = parts[0]
    for part in parts[1:]:
        merged = merged + part
    return result(directory, merged, config, settings)


def _target_results(sums: SlotSums, ranked: bool, confidence: float) -> list[TargetResult]:
    """Each target's estimates at each position, with its top segments."""
    targets = []
    for position, summed in sorted(sums.positions.items()):
        for target in summed.weights:
            estimates, ess, mean_weight = summed.target(target, confidence)
            result_ = TargetResult(
                target=target, position=position if ranked else None, estimates=estimates,
                effective_sample_size=ess,
                weights={"mean": mean_weight, "max": summed.max_weight[target]},
                weight_sample=[], curve=[],
            )  # fmt: skip
            result_.segments = _top_segments(sums.segments, position, target, confidence)
            if ess < min(100.0, 0.01 * summed.sums.rounds):
                result_.warnings.append(
                    f"effective sample size {ess:.0f}: the estimates rest on few rounds"
                )
            targets.append(result_)
    return targets


def _page_results(summed: Summed, confidence: float) -> list[PageResult]:
    """A ranked slot's page values per target, with the assumption each estimator makes."""
    page_results = []
    for target in summed.weights:
        estimates, ess, mean_weight = summed.target(target, confidence)
        assumptions = {
            e.estimator: pages.ASSUMPTIONS[
                "standard" if e.estimator.startswith("standard") else "reward-interaction"
            ]
            for e in estimates
        }
        page_results.append(PageResult(target, estimates, assumptions, ess, mean_weight))
    return page_results


def _merged(mine: dict[K, S], theirs: dict[K, S]) -> dict[K, S]:
    out = dict(mine)
    for key, value in theirs.items():
        out[key] = out[key] + value if key in out else value
    return out


def _top_segments(
    segments: dict[tuple[int, str], Summed], position: int, target: str, confidence: float
) -> dict[str, list[est.Estimate]]:
    """The position's TOP_SEGMENTS largest segments, ordered as a single file's replay
    orders them; a segment of one round has no estimates."""
    mine = {value: summed for (at, value), summed in segments.items() if at == position}
    values = np.asarray(sorted(mine), dtype=object)
    counts = np.asarray([mine[v].sums.rounds for v in values], dtype=np.int64)
    return {
        str(value): mine[value].target(target, confidence)[0] if mine[value].sums.rounds > 1
        else []
        for value in values[np.argsort(-counts)][:TOP_SEGMENTS]
    }  # fmt: skip


def _either(mine: S | None, theirs: S | None) -> S | None:
    """Two partitions' optional sums merged; either may have none."""
    return theirs if mine is None else mine if theirs is None else mine + theirs


def _needs_model(name: str) -> bool:
    return any(e.needs_model for e in est.make_estimators([name]))


def load_rate(directory: str) -> tuple[int, float]:
    """(rounds, seconds) to read every partition's round columns in this process: the load
    throughput of one core, with no event decoded."""
    started, rounds = time.perf_counter(), 0
    for path in partition_paths(directory):
        part = read_partition(path)
        for slot in part.slots:
            for group in ("treatment", "control"):
                rounds += len(part.rounds(slot, group))
    return rounds, time.perf_counter() - started
