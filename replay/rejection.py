"""Rejection-sampling replay (Li et al., 2011): a cross-check for logs with uniform logging.

Walk the log in time order; the target draws its own choice for each round, and the round
counts only when that draw equals the logged choice. Under uniform logging the kept rounds
are an unbiased sample of what the target would have experienced, so their mean reward
estimates its value with no importance weights at all. It needs uniform propensities, and
keeps about 1 / (number of candidates) of the rounds.
"""

from __future__ import annotations

import numpy as np

from replay import estimators as est
from replay.rounds import Rounds

UNIFORM_TOLERANCE = 1e-6


class NotUniformError(ValueError):
    """The log was not logged uniformly at random, so rejection sampling does not apply."""


def check_uniform(rounds: Rounds) -> None:
    expected = 1.0 / rounds.choices_left()
    off = np.abs(rounds.propensity - expected) > UNIFORM_TOLERANCE
    if np.any(off):
        raise NotUniformError(
            f"rejection sampling needs uniformly logged rounds; {int(off.sum())} of "
            f"{len(rounds)} have another propensity"
        )


def rejection_kept(rounds: Rounds, pmf: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n,) whether each round is kept: the target's own draw equals the logged choice there
    and, for rows, at every position above it in its page (a page counts for position k only
    while the target would have placed the same rows)."""
    check_uniform(rounds)
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(pmf, axis=1)
    draws = rng.random(len(rounds)) * cumulative[:, -1]
    picked = np.minimum((cumulative <= draws[:, None]).sum(axis=1), pmf.shape[1] - 1)
    matched = (picked == rounds.chosen).astype(float)
    result: np.ndarray = (rounds.prefix_product(matched) * matched) > 0
    return result


def rejection_estimate(kept_rewards: np.ndarray, confidence: float = 0.95) -> est.Estimate:
    """The target's value: the mean reward of the kept rounds."""
    if len(kept_rewards) < 2:
        raise est.EstimatorError("rejection sampling kept fewer than 2 rounds")
    return est.mean_estimate("rejection", kept_rewards, confidence)
