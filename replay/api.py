"""The Python entry point for data scientists: off-policy estimates on numpy arrays, or on a
rewarded log, each as a typed `Result` (value, interval, effective sample size).

On arrays, one entry per logged round: the reward, the logger's probability of the action
it took, and the target policy's probability of that same action.

>>> from replay.api import estimate_arrays
>>> results = estimate_arrays(
...     reward=[1.0, 0.0, 1.0, 0.0], propensity=[0.5, 0.5, 0.25, 0.25],
...     target_chosen=[1.0, 0.0, 0.5, 0.5], estimators=("ips", "snips"))
>>> round(results["ips"].value, 4), round(results["snips"].value, 4)
(1.0, 0.6667)
>>> results["ips"].effective_sample_size, results["ips"].rounds
(3.0, 4)

On a log, every target spec `artbandit replay --policy` takes, per slot:

    estimate_log("var/demo/rewarded.jsonl.gz", policy="learn:", slot="artwork")

See docs/data-science.md, "The Python API".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bandit.config import Config
from replay import estimators as est
from replay.evaluate import evaluate
from replay.logs import read_log
from replay.results import Settings
from replay.targets import parse_target


@dataclass(frozen=True)
class Result:
    """One estimator's estimate of a target's value per round (position, for rows)."""

    estimator: str
    value: float
    low: float  # the normal (delta-method) interval at `confidence`
    high: float
    std_error: float
    effective_sample_size: float  # Kish's: how many on-policy rounds the log is worth here
    rounds: int
    bootstrap: tuple[float, float] | None = None  # with `bootstrap` > 0 replicates


def estimate_arrays(
    reward: Sequence[float] | np.ndarray,
    propensity: Sequence[float] | np.ndarray,
    target_chosen: Sequence[float] | np.ndarray,
    *,
    estimators: Sequence[str] = ("ips", "clipped_ips", "snips"),
    confidence: float = 0.95,
    bootstrap: int = 0,
    seed: int = 0,
    max_weight: float = 20.0,
    target: np.ndarray | None = None,
    q: np.ndarray | None = None,
    chosen: Sequence[int] | np.ndarray | None = None,
) -> dict[str, Result]:
    """Estimates of the target's value from logged rounds, by estimator name.

    `reward`, `propensity` (the logger's probability of the logged action, in (0, 1]) and
    `target_chosen` (the target's probability of it) have one entry per round. The
    model-based estimators ("dm", "dr", "sndr", "switch_dr") also need `target` and `q`,
    (rounds, actions) arrays of the target's probabilities and a reward model's
    predictions, and `chosen`, the logged action's column. Raises ValueError naming the
    argument at fault."""
    data = est.OffPolicyData(
        reward=np.asarray(reward, dtype=float),
        propensity=np.asarray(propensity, dtype=float),
        target_chosen=np.asarray(target_chosen, dtype=float),
        chosen=None if chosen is None else np.asarray(chosen, dtype=int),
        target=None if target is None else np.asarray(target, dtype=float),
        q=None if q is None else np.asarray(q, dtype=float),
    )
    ess = est.effective_sample_size(data.weights)
    results = {}
    for estimator in est.make_estimators(tuple(estimators), max_weight=max_weight):
        found = estimator.interval(data, confidence, bootstrap, seed)
        results[found.estimator] = _result(found, ess)
    return results


def estimate_log(
    log: str | Path,
    policy: str,
    *,
    slot: str | None = None,
    config: Config | None = None,
    estimators: Sequence[str] = ("ips", "snips", "dr"),
    confidence: float = 0.95,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, dict[str, Result]]:
    """Estimates of one target policy (any `--policy` spec) on a rewarded log
    (.jsonl[.gz], .parquet): slot -> estimator -> Result, for the single-choice slots, or
    for position 0 of a ranked one. `config` defaults to the built-in defaults."""
    from storage.config_file import load_config

    config = config or load_config(environ={})
    replay_log = read_log(str(log), quiet=True)
    settings = Settings(estimators=tuple(estimators), confidence=confidence,
                        bootstrap=bootstrap, seed=seed, slots=(slot,) if slot else ())  # fmt: skip
    replayed = evaluate(replay_log, [parse_target(policy, config, seed)], config, settings)
    found: dict[str, dict[str, Result]] = {}
    for slot_result in replayed.slots:
        for target in slot_result.targets:
            if target.position in (None, 0):
                found[slot_result.slot] = {
                    e.estimator: _result(e, target.effective_sample_size) for e in target.estimates
                }
    return found


def _result(found: est.Estimate, ess: float) -> Result:
    return Result(
        estimator=found.estimator, value=found.value, low=found.normal[0],
        high=found.normal[1], std_error=found.std_error, effective_sample_size=ess,
        rounds=found.rounds, bootstrap=found.bootstrap,
    )  # fmt: skip
