"""Sums that an estimate's point, normal interval and bootstrap need, mergeable by addition.

Every estimator is a sum of ratios of means of per-round columns (`estimators.Pieces`). Its
point estimate needs each column's sum; its delta-method standard error is the spread of a
linear combination of the columns, which their sums of products give exactly; a bootstrap
replicate needs each column's sum under a resample of the rounds. All three are sums over
rounds, so the sums of two parts of a log add up to the sums of the whole: a log split in
partitions (`replay.partitioned`) is estimated from per-partition sums, merged exactly.

The bootstrap of a partitioned log resamples within each partition (a stratified
bootstrap: each partition keeps its size), with a seed derived from the run's seed and the
partition's index, so a partition's replicates do not depend on where it is computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

# (numerator column, denominator column or None = 1) of each piece, as columns of a matrix
Layout = list[tuple[int, int | None]]


@dataclass
class Moments:
    """Over `rounds` rows of some columns: each column's sum, the sums of the products of
    every two columns, and each column's sum under each bootstrap resample of the rows."""

    rounds: int
    sums: np.ndarray  # (m,)
    products: np.ndarray  # (m, m)
    resampled: np.ndarray  # (replicates, m)

    @classmethod
    def of(cls, columns: np.ndarray, replicates: int, rng: np.random.Generator) -> Moments:
        """`columns` (rows, m). A resample is a count per row (a bincount of `rows` uniform
        draws): one product with the columns per replicate, whatever the estimators. The
        products are numpy's own loops (einsum), not BLAS, whose sums depend on how many
        threads it runs: the same partition gives the same bits on any machine's worker."""
        rows = len(columns)
        resampled = np.empty((replicates, columns.shape[1]))
        for replicate in range(replicates):
            counts = np.bincount(rng.integers(0, rows, size=rows), minlength=rows)
            resampled[replicate] = np.einsum("i,ij->j", counts.astype(float), columns)
        return cls(rows, columns.sum(axis=0), np.einsum("ij,ik->jk", columns, columns), resampled)

    def __add__(self, other: Moments) -> Moments:
        if self.resampled.shape != other.resampled.shape:
            raise ValueError("moments of different columns or replicates cannot be merged")
        return Moments(
            self.rounds + other.rounds, self.sums + other.sums,
            self.products + other.products, self.resampled + other.resampled,
        )  # fmt: skip

    def point(self, layout: Layout) -> float:
        n = float(self.rounds)
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(sum(
                self.sums[num] / n / (1.0 if den is None else self.sums[den] / n)
                for num, den in layout
            ))  # fmt: skip

    def std_error(self, layout: Layout) -> float:
        """The delta-method standard error: the std (ddof 1) over rounds of each round's
        linearised contribution, sum_k a_k column_k + constant, from the sums of products."""
        n = self.rounds
        if n < 2:
            return math.inf
        a = np.zeros(len(self.sums))
        for num, den in layout:
            if den is None:
                a[num] += 1.0
                continue
            scale = self.sums[den] / n
            if scale == 0:
                return math.inf
            a[num] += 1.0 / scale
            a[den] -= self.sums[num] / n / scale**2
        total = float(np.einsum("i,i->", a, self.sums))
        squares = float(np.einsum("i,ij,j->", a, self.products, a))
        return math.sqrt(max(squares - total * total / n, 0.0) / (n - 1) / n)

    def replicates(self, layout: Layout) -> np.ndarray:
        """The estimate under each bootstrap resample."""
        values = np.zeros(len(self.resampled))
        for num, den in layout:
            bottom = float(self.rounds) if den is None else self.resampled[:, den]
            with np.errstate(divide="ignore", invalid="ignore"):
                values += np.where(bottom != 0, self.resampled[:, num] / bottom, np.nan)
        return values


def stack(pieces: list[tuple[np.ndarray, np.ndarray | None]]) -> tuple[np.ndarray, Layout]:
    """Pieces as the columns of one matrix and where each piece's columns are."""
    columns: list[np.ndarray] = []
    layout: Layout = []
    for num, den in pieces:
        columns.append(num)
        top = len(columns) - 1
        if den is not None:
            columns.append(den)
        layout.append((top, None if den is None else len(columns) - 1))
    return np.stack(columns, axis=1).astype(float, copy=False), layout


def shifted(layout: Layout, offset: int) -> Layout:
    """`layout` for columns placed `offset` columns into a wider matrix."""
    return [(num + offset, None if den is None else den + offset) for num, den in layout]


def normal_bounds(value: float, error: float, confidence: float) -> tuple[float, float]:
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return value - z * error, value + z * error


def percentile_bounds(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    return float(np.quantile(replicates, tail)), float(np.quantile(replicates, 1 - tail))
