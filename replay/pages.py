"""The value of a whole page of a ranked slot (rows), with an interval clustered by page.

A person sees the page, not a position, and the positions of one page share a person, a
context and a logger's draws: their errors are correlated, so a page value's interval must
treat the page as the unit. Both page estimators here are per-page pieces (`Pieces` over
pages), so the estimators module's delta-method interval and bootstrap resample pages:

- `by_page`: any per-position estimator summed over positions (reward-interaction
  weights: a position's reward may depend on the rows above it, not on those below).
- `standard`: slate IPS, each page weighted by the product of its positions' ratios (obp's
  `SlateStandardIPS`): no assumption on how rewards depend on the rows, the most variance.

A single-choice slot's page is its one round, so both reduce to the round's estimator.
"""

from __future__ import annotations

import numpy as np

from replay.estimators import Pieces
from replay.rounds import Rounds

ASSUMPTIONS = {
    "reward-interaction": "a row's reward depends on the rows at and above it, not below",
    "standard": "none: the whole page is the action (unbiased, the most variance)",
}


def by_page(pieces: Pieces, rounds: Rounds) -> Pieces:
    """Per-round pieces regrouped per page: for each piece and position, the numerator
    summed over that position's round of each page, and the denominator (1 for a page that
    has the position, when the estimator has none). Their value is the sum over positions of
    the position estimates; their influence is summed per page."""
    pages = len(rounds.events)
    grouped: Pieces = []
    for position in np.unique(rounds.position):
        at = rounds.position == position
        page = rounds.event_index[at]
        for num, den in pieces:
            bottom = np.ones(int(at.sum())) if den is None else den[at]
            grouped.append((
                np.bincount(page, weights=num[at], minlength=pages),
                np.bincount(page, weights=bottom, minlength=pages),
            ))  # fmt: skip
    return grouped


def page_weight(rounds: Rounds, ratio: np.ndarray) -> np.ndarray:
    """(pages,) the product of `ratio` over each page's rounds."""
    weight = np.ones(len(rounds.events))
    for position in np.unique(rounds.position):
        at = rounds.position == position
        weight[rounds.event_index[at]] *= ratio[at]
    return weight


def standard(rounds: Rounds, weight: np.ndarray, normalised: bool = False) -> Pieces:
    """Slate IPS: each page's total reward times its `page_weight` (SNIPS-style divided by
    the mean page weight when `normalised`)."""
    total = np.bincount(rounds.event_index, weights=rounds.reward, minlength=len(rounds.events))
    return [(weight * total, weight if normalised else None)]
