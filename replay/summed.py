"""Columns of per-round terms and their merged sums: what every replay estimate, interval
and effective sample size is computed from (`replay.moments`), on one file or partitions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from replay import estimators as est
from replay import moments
from replay.moments import Layout, Moments


@dataclass
class Columns:
    """Where each (target, estimator)'s pieces and each target's weights are in a matrix."""

    layouts: dict[tuple[str, str], Layout] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    parts: list[np.ndarray] = field(default_factory=list)

    def add(self, key: tuple[str, str], pieces: est.Pieces) -> None:
        matrix, layout = moments.stack(pieces)
        self.layouts[key] = moments.shifted(layout, self.width)
        self.parts.append(matrix)

    def add_weights(self, target: str, weights: np.ndarray) -> None:
        self.weights[target] = self.width
        self.parts.append(weights[:, None])

    @property
    def width(self) -> int:
        return sum(part.shape[1] for part in self.parts)

    def moments(self, bootstrap: int, seed: np.random.SeedSequence) -> Moments:
        return Moments.of(np.hstack(self.parts), bootstrap, np.random.default_rng(seed))


@dataclass
class Summed:
    """Moments and where their columns are, with the largest weight per target (positions;
    the page sums leave it empty)."""

    sums: Moments
    layouts: dict[tuple[str, str], Layout]
    weights: dict[str, int]
    max_weight: dict[str, float]

    def target(self, target: str, confidence: float) -> tuple[list[est.Estimate], float, float]:
        """`target`'s estimates, the effective sample size of its weights and their mean."""
        estimates = [
            est.estimate(name, self.sums, layout, confidence)
            for (owner, name), layout in self.layouts.items()
            if owner == target
        ]
        column = self.weights[target]
        total, squares = self.sums.sums[column], self.sums.products[column, column]
        ess = float(total**2 / squares) if squares > 0 else 0.0
        return estimates, ess, float(total / self.sums.rounds)

    def __add__(self, other: Summed) -> Summed:
        if self.layouts != other.layouts or self.weights != other.weights:
            raise ValueError("partitions estimated different targets or estimators")
        return Summed(
            self.sums + other.sums, self.layouts, self.weights,
            {k: max(v, other.max_weight[k]) for k, v in self.max_weight.items()},
        )  # fmt: skip


def plain(values: np.ndarray) -> Moments:
    """Moments of one column, no bootstrap: an on-policy mean."""
    return Moments.of(np.asarray(values, dtype=float)[:, None], 0, np.random.default_rng(0))
