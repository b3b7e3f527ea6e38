"""An enumerable rows world: 5 candidate rows, 3 positions, Plackett-Luce rankings, and a click
probability of examination(position) x relevance(row). The value of any Plackett-Luce ranking
at each position is known exactly by summing over all 60 orderings, so a replay estimate can
be checked against the truth, not against another estimator."""

from __future__ import annotations

import itertools

import numpy as np

from bandit.contracts.events import Candidate, Context, DecisionEvent, PolicyRef, RewardedEvent

ROWS = [f"row{i}" for i in range(5)]
POSITIONS = 3
EXAMINATION = np.array([1.0, 0.6, 0.35])
RELEVANCE = np.array([0.10, 0.30, 0.50, 0.20, 0.40])
LOGGER = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # Plackett-Luce weights of the logging policy
TARGET = np.array([4.0, 1.0, 6.0, 0.5, 3.0])  # and of the target


def conditional(weights: np.ndarray, placed: list[int]) -> np.ndarray:
    """The Plackett-Luce probability of each row next, given the rows already placed."""
    free = np.ones(len(weights), dtype=bool)
    free[placed] = False
    mass = np.where(free, weights, 0.0)
    return mass / mass.sum()


def true_values(weights: np.ndarray = TARGET) -> np.ndarray:
    """(positions,) the expected reward at each position of a ranking drawn with `weights`."""
    values = np.zeros(POSITIONS)
    for order in itertools.permutations(range(len(ROWS)), POSITIONS):
        probability = np.prod(
            [conditional(weights, list(order[:k]))[order[k]] for k in range(POSITIONS)]
        )
        values += probability * EXAMINATION * RELEVANCE[list(order)]
    return values


def target_pmf(context: Context, candidates: list[Candidate]) -> list[float]:
    """A `python:` replay target: the target's Plackett-Luce pmf over the rows left."""
    weights = np.array([TARGET[ROWS.index(c.id)] for c in candidates])
    return (weights / weights.sum()).tolist()


def logger_pmf(context: Context, candidates: list[Candidate]) -> list[float]:
    """The logger as a `python:` spec (`--logger`): its Plackett-Luce pmf over the rows left."""
    weights = np.array([LOGGER[ROWS.index(c.id)] for c in candidates])
    return (weights / weights.sum()).tolist()


def rankings(pages: int, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(pages, positions) Plackett-Luce draws: the top rows of log-weight plus Gumbel noise."""
    noisy = np.log(weights) + rng.gumbel(size=(pages, len(weights)))
    return np.argsort(-noisy, axis=1)[:, :POSITIONS]


def conditionals(weights: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """(pages, positions, rows) the pmf at each position given the rows placed above it."""
    pages = len(orders)
    free = np.ones((pages, len(weights)))
    out = np.zeros((pages, POSITIONS, len(weights)))
    for k in range(POSITIONS):
        mass = free * weights
        out[:, k] = mass / mass.sum(axis=1, keepdims=True)
        free[np.arange(pages), orders[:, k]] = 0.0
    return out


def logged_pages(pages: int, seed: int, logger: np.ndarray = LOGGER) -> list[RewardedEvent]:
    """`pages` rows decisions ranked by `logger`'s weights, with their per-position clicks."""
    rng = np.random.default_rng(seed)
    orders = rankings(pages, logger, rng)
    pmfs = conditionals(logger, orders)
    propensities = np.take_along_axis(pmfs, orders[:, :, None], axis=2)[:, :, 0]
    clicks = rng.random((pages, POSITIONS)) < EXAMINATION * RELEVANCE[orders]
    candidates = [Candidate(id=row, features={"genre": row}) for row in ROWS]
    log = []
    for page in range(pages):
        decision = DecisionEvent(
            decision_id=f"p{seed}-{page}", ts=1.7e9 + page, slot="rows", key="home",
            user_hash=f"u{page}", group="treatment", policy=PolicyRef(name="pl", version="v1"),
            context=Context(user={}, request={}), candidates=candidates,
            chosen=[ROWS[i] for i in orders[page]], probabilities=propensities[page].tolist(),
            explored=True,
        )  # fmt: skip
        rewards = clicks[page].astype(float).tolist()
        log.append(RewardedEvent.from_decision(decision, rewards, True, 1.7e9 + page + 60))
    return log
