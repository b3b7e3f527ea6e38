"""Slate estimators that see a page through where each row can land: independent IPS and the
pseudo-inverse (PI) estimator.

The logged propensity of a rows decision is conditional on the rows placed above, and the
logger's pmf at a position depends on those rows (a VW CCB policy sees them as features), so
the logged numbers alone do not say how likely a row was *at a position* over all the pages
the logger could have drawn. Both estimators here need exactly that: the item-position
marginals (independent IPS) and the pairwise ones (PI), of the logger and of the target.
Replay re-derives them by asking each policy for its pmf after every prefix of the page
(`enumerate_rankings`): exact, and affordable while a page has few orderings (5 rows in 3
positions: 60; 10 rows in 3: 720). The logger is any target spec (`--logger`; by default
the versions that logged, from the model store), checked against the logged propensities
before it is trusted.

- Independent IPS weights the reward at position k by the target's over the logger's
  marginal probability of the logged row there (obp's `SlateIndependentIPS`): unbiased when
  a position's reward depends only on the row there, with far smaller weights than slate IPS.
- PI (Swaminathan et al., 2017) weights the page's total reward by q' pinv(G) 1(s): unbiased
  when the page's expected reward is a sum over positions of what each row earns there,
  without observing per-position rewards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from replay.estimators import Pieces
from replay.rounds import Rounds

PmfOf = Callable[[Sequence[int]], np.ndarray]  # rows placed -> the pmf over all candidates
NAMES = ("independent_ips", "independent_snips", "pseudo_inverse", "pseudo_inverse_snips")
ASSUMPTIONS = {
    "independent": "a position's reward depends only on the row placed there",
    "pseudo-inverse": "the page's reward is a sum over positions of what the row there earns",
}


@dataclass(frozen=True)
class Rankings:
    """Every ordering a policy can give a page, with its probability."""

    orders: np.ndarray  # (L, positions) candidate indices
    probability: np.ndarray  # (L,)
    candidates: int

    def marginals(self) -> np.ndarray:
        """(positions, candidates) the probability of each candidate at each position."""
        positions = self.orders.shape[1]
        out = np.zeros((positions, self.candidates))
        for k in range(positions):
            out[k] = np.bincount(self.orders[:, k], self.probability, self.candidates)
        return out

    def pairs(self) -> np.ndarray:
        """(positions * candidates,) ** 2: E[1(s) 1(s)'], 1(s) the indicator of (position,
        candidate) placements of an ordering s, indexed position * candidates + candidate."""
        cells = self.cells(self.orders)
        size = self.orders.shape[1] * self.candidates
        indicator = np.zeros((len(self.orders), size))
        np.put_along_axis(indicator, cells, 1.0, axis=1)
        result: np.ndarray = (indicator * self.probability[:, None]).T @ indicator
        return result

    def cells(self, orders: np.ndarray) -> np.ndarray:
        """(…, positions) the (position, candidate) index of each placement of `orders`."""
        result: np.ndarray = np.arange(orders.shape[-1]) * self.candidates + orders
        return result


def ranking_count(candidates: int, positions: int) -> int:
    """How many orderings fill `positions` from `candidates`."""
    return math.perm(candidates, min(positions, candidates))


def enumerate_rankings(pmf_of: PmfOf, candidates: int, positions: int) -> Rankings:
    """Every ordering with positive probability, by asking `pmf_of` after each prefix: one
    call per prefix shorter than `positions`, each ordering's probability the product of
    its conditionals (orderings a policy never draws are not visited)."""
    orders: list[list[int]] = [[]]
    probability = [1.0]
    for _ in range(min(positions, candidates)):
        longer, chances = [], []
        for prefix, p in zip(orders, probability, strict=True):
            pmf = np.asarray(pmf_of(prefix), float)
            pmf[prefix] = 0.0
            for row in np.flatnonzero(pmf > 0).tolist():
                longer.append([*prefix, row])
                chances.append(p * float(pmf[row]))
        orders, probability = longer, chances
    return Rankings(
        np.asarray(orders, dtype=np.int64).reshape(len(orders), -1),
        np.asarray(probability),
        candidates,
    )


def collector(rounds: Rounds) -> tuple[list[Rankings | None], Callable[[int, PmfOf], None]]:
    """A list with a slot per page of `rounds` and the hook a target fills it through: each
    page's orderings under the target, as many positions deep as the page's log."""
    found: list[Rankings | None] = [None] * len(rounds.events)

    def hook(page: int, pmf_of: PmfOf) -> None:
        event = rounds.events[page]
        found[page] = enumerate_rankings(pmf_of, len(event.candidates), len(event.chosen))

    return found, hook


def complete(found: list[Rankings | None]) -> list[Rankings]:
    """`found` once every page has its orderings."""
    missing = sum(r is None for r in found)
    if missing:
        raise ValueError(f"{missing} pages have no orderings: the target skipped them")
    return [r for r in found if r is not None]


def logged_orders(rounds: Rounds) -> list[np.ndarray]:
    """Each page's logged ordering (candidate indices), in `rounds.events` order."""
    orders: list[list[int]] = [[] for _ in rounds.events]
    for page, chosen in zip(rounds.event_index.tolist(), rounds.chosen.tolist(), strict=True):
        orders[page].append(chosen)
    return [np.asarray(order, dtype=np.int64) for order in orders]


def independent(
    rounds: Rounds, logger: list[Rankings], target: list[Rankings], normalised: bool = False
) -> Pieces:
    """Independent IPS: position k's reward times the ratio of the logged row's marginals at
    k. Per page the sum over positions; `normalised` divides each position's sum by the sum
    of its weights (self-normalised per position)."""
    mu = [m.marginals() for m in logger]
    pi = [t.marginals() for t in target]
    ratio = np.asarray([
        pi[page][k, row] / mu[page][k, row]
        for page, k, row in zip(rounds.event_index.tolist(), rounds.position.tolist(),
                                rounds.chosen.tolist(), strict=True)
    ])  # fmt: skip
    return _per_page(rounds, ratio, normalised)


def _per_page(rounds: Rounds, ratio: np.ndarray, normalised: bool) -> Pieces:
    pages = len(rounds.events)
    if not normalised:
        page = np.bincount(rounds.event_index, weights=ratio * rounds.reward, minlength=pages)
        return [(page, None)]
    pieces: Pieces = []
    for position in np.unique(rounds.position):
        at = rounds.position == position
        page = rounds.event_index[at]
        pieces.append((
            np.bincount(page, weights=ratio[at] * rounds.reward[at], minlength=pages),
            np.bincount(page, weights=ratio[at], minlength=pages),
        ))  # fmt: skip
    return pieces


def pseudo_inverse(
    rounds: Rounds, logger: list[Rankings], target: list[Rankings], normalised: bool = False
) -> Pieces:
    """PI: each page's total reward times q' pinv(G) 1(s), q the target's marginals and G the
    logger's pairwise ones (a ranking's indicators are linearly dependent, so G is singular
    and its pseudo-inverse stands in for the inverse). `normalised` divides by the mean
    weight (wPI)."""
    weight = np.zeros(len(rounds.events))
    inverses: dict[bytes, np.ndarray] = {}  # loggers that give many pages one distribution
    for page, (order, mu, pi) in enumerate(zip(logged_orders(rounds), logger, target, strict=True)):
        key = mu.orders.tobytes() + mu.probability.tobytes() + bytes([mu.candidates % 256])
        inverse = inverses.get(key)
        if inverse is None:
            inverse = inverses.setdefault(key, np.linalg.pinv(mu.pairs(), hermitian=True))
        g = inverse @ pi.marginals()[: len(order)].ravel()
        weight[page] = g[mu.cells(order)].sum()
    total = np.bincount(rounds.event_index, weights=rounds.reward, minlength=len(rounds.events))
    return [(weight * total, weight if normalised else None)]
