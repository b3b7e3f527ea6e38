"""Off-policy estimators of a target policy's value from logged, propensity-stamped rounds.

Every estimator is a sum of ratios of sample means, V = sum_k mean(num_k) / mean(den_k): IPS
is mean(w r) / 1, SNIPS mean(w r) / mean(w), and so on. That one form gives every estimator
the same vectorised point estimate, a normal interval from its linearisation (the delta
method) and a seeded bootstrap, so a new estimator is a few lines of numpy.

Notation: w = pi(a|x) / mu(a|x) for the logged action a, r the logged reward, q(x, a) a
reward model's prediction, dm = sum_a pi(a|x) q(x, a).

Ranked slots (rows): a position's round carries a prefix weight W, the product of w over the
positions above it in its page, and every estimator scales its per-round term by it (w becomes
W w, dm becomes W dm). That is the reward-interaction (cascade) family: unbiased for the
target's ranking when a position's reward depends on the rows at and above it, not below.
Without W, position k would value the logger's rows above k followed by the target's pick.

>>> data = OffPolicyData(reward=[1.0, 0.0], propensity=[0.5, 0.5], target_chosen=[1.0, 0.0])
>>> IPS().estimate(data)
1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from replay import moments

Pieces = list[tuple[np.ndarray, np.ndarray | None]]  # (numerator, denominator or None = 1)


class EstimatorError(ValueError):
    """The data cannot give this estimate (e.g. a model-based estimator without a model)."""


@dataclass(frozen=True)
class OffPolicyData:
    """The arrays an estimate needs, one entry per round. `target` and `q` are (n, actions),
    zero where an action was not available; they are needed by model-based estimators only."""

    reward: np.ndarray
    propensity: np.ndarray
    target_chosen: np.ndarray  # pi(a|x) of the logged action
    chosen: np.ndarray | None = None  # logged action's column in `target` and `q`
    target: np.ndarray | None = None
    q: np.ndarray | None = None
    # rows: pi / mu of the logged rows above this position (None: all 1, no rows above)
    prefix_weight: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.prefix_weight is None:
            object.__setattr__(self, "prefix_weight", np.ones(len(self.reward)))
        for name in ("reward", "propensity", "target_chosen", "prefix_weight"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=float))
        n = len(self.reward)
        for name in ("propensity", "target_chosen", "prefix_weight"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name}: expected {n} entries like reward")
        if not np.all(np.isfinite(self.reward)):
            raise ValueError("reward: every entry must be finite")
        if np.any(~(self.propensity > 0)) or np.any(self.propensity > 1):
            raise ValueError("propensity: every entry must be in (0, 1]")
        if np.any(~(self.target_chosen >= 0)) or np.any(self.target_chosen > 1 + 1e-9):
            raise ValueError("target_chosen: every entry must be a probability")
        prefix = self.prefix_weight
        assert prefix is not None  # filled above
        if np.any(~(prefix >= 0)) or not np.all(np.isfinite(prefix)):
            raise ValueError("prefix_weight: every entry must be finite and >= 0")
        if self.q is not None:
            if self.target is None or self.chosen is None:
                raise ValueError("q: needs target and chosen too")
            if self.q.shape != self.target.shape or self.q.shape[0] != n:
                raise ValueError(f"q and target: expected the same ({n}, actions) shape")

    @property
    def weights(self) -> np.ndarray:
        """W w: the target's over the logger's probability of the round's choice (and, for
        rows, of the rows above it)."""
        weights: np.ndarray = self._prefix * self.target_chosen / self.propensity
        return weights

    @property
    def direct(self) -> np.ndarray:
        """W dm: the reward model's value of the target at each round."""
        target, q, _ = self._model()
        values: np.ndarray = self._prefix * np.einsum("ij,ij->i", target, q)
        return values

    @property
    def q_chosen(self) -> np.ndarray:
        _, q, chosen = self._model()
        values: np.ndarray = q[np.arange(len(self.reward)), chosen]
        return values

    @property
    def _prefix(self) -> np.ndarray:
        assert self.prefix_weight is not None  # __post_init__ fills it
        return self.prefix_weight

    def _model(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`target`, `q` and `chosen`, which model-based estimators need."""
        if self.target is None or self.q is None or self.chosen is None:
            raise EstimatorError("this estimate needs a reward model (target, q and chosen)")
        return self.target, self.q, self.chosen

    def __len__(self) -> int:
        return len(self.reward)

    def select(self, mask: np.ndarray) -> OffPolicyData:
        """The rounds where `mask` is True (a position of rows, a segment)."""

        def pick(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[mask]

        return OffPolicyData(
            reward=self.reward[mask], propensity=self.propensity[mask],
            target_chosen=self.target_chosen[mask], chosen=pick(self.chosen),
            target=pick(self.target), q=pick(self.q), prefix_weight=pick(self.prefix_weight),
        )  # fmt: skip


@dataclass(frozen=True)
class Estimate:
    estimator: str
    value: float
    std_error: float
    normal: tuple[float, float]  # (low, high) at the requested confidence
    bootstrap: tuple[float, float] | None
    rounds: int


@dataclass(frozen=True)
class Estimator:
    """One estimator: `pieces` gives its numerators and denominators."""

    name: str = field(init=False, default="")
    needs_model: bool = field(init=False, default=False)

    def pieces(self, data: OffPolicyData) -> Pieces:
        raise NotImplementedError

    def estimate(self, data: OffPolicyData) -> float:
        return point(self._checked(data))

    def interval(
        self,
        data: OffPolicyData,
        confidence: float = 0.95,
        bootstrap: int = 0,
        seed: int = 0,
    ) -> Estimate:
        """The point estimate with a normal interval and, with `bootstrap` > 0 replicates, a
        percentile bootstrap interval."""
        return interval(self.name, self._checked(data), confidence, bootstrap, seed)

    def _checked(self, data: OffPolicyData) -> Pieces:
        if len(data) == 0:
            raise EstimatorError(f"{self.name}: no rounds to estimate from")
        if self.needs_model and data.q is None:
            raise EstimatorError(f"{self.name}: needs a reward model (q)")
        return self.pieces(data)


@dataclass(frozen=True)
class IPS(Estimator):
    """Inverse propensity scoring: unbiased, high variance when weights are large."""

    name: str = field(init=False, default="ips")

    def pieces(self, data: OffPolicyData) -> Pieces:
        return [(data.weights * data.reward, None)]


@dataclass(frozen=True)
class ClippedIPS(Estimator):
    """IPS with weights capped at `max_weight`: less variance for a downward bias."""

    max_weight: float = 20.0
    name: str = field(init=False, default="clipped_ips")

    def pieces(self, data: OffPolicyData) -> Pieces:
        return [(np.minimum(data.weights, self.max_weight) * data.reward, None)]


@dataclass(frozen=True)
class SNIPS(Estimator):
    """Self-normalised IPS: weights divided by their mean; small bias, far less variance."""

    name: str = field(init=False, default="snips")

    def pieces(self, data: OffPolicyData) -> Pieces:
        weights = data.weights
        return [(weights * data.reward, weights)]


@dataclass(frozen=True)
class DM(Estimator):
    """Direct method: the reward model's value of the target; biased as the model is."""

    name: str = field(init=False, default="dm")
    needs_model: bool = field(init=False, default=True)

    def pieces(self, data: OffPolicyData) -> Pieces:
        return [(data.direct, None)]


@dataclass(frozen=True)
class DR(Estimator):
    """Doubly robust: DM plus an IPS correction of the model's error on the logged action."""

    name: str = field(init=False, default="dr")
    needs_model: bool = field(init=False, default=True)

    def pieces(self, data: OffPolicyData) -> Pieces:
        return [(data.direct + data.weights * (data.reward - data.q_chosen), None)]


@dataclass(frozen=True)
class SNDR(Estimator):
    """Self-normalised DR: the correction term's weights normalised as in SNIPS."""

    name: str = field(init=False, default="sndr")
    needs_model: bool = field(init=False, default=True)

    def pieces(self, data: OffPolicyData) -> Pieces:
        weights = data.weights
        return [(data.direct, None), (weights * (data.reward - data.q_chosen), weights)]


@dataclass(frozen=True)
class SwitchDR(Estimator):
    """Switch-DR: the DR correction only where the weight is at most `tau`; DM elsewhere."""

    tau: float = 20.0
    name: str = field(init=False, default="switch_dr")
    needs_model: bool = field(init=False, default=True)

    def pieces(self, data: OffPolicyData) -> Pieces:
        weights = data.weights
        correction = np.where(weights <= self.tau, weights * (data.reward - data.q_chosen), 0.0)
        return [(data.direct + correction, None)]


NAMES = ("ips", "clipped_ips", "snips", "dm", "dr", "sndr", "switch_dr")


def make_estimators(
    names: list[str] | tuple[str, ...] = NAMES, max_weight: float = 20.0, tau: float = 20.0
) -> list[Estimator]:
    """Estimators by name, in the order given; `max_weight` clips IPS, `tau` switches DR."""
    known = {
        "ips": IPS(), "clipped_ips": ClippedIPS(max_weight), "snips": SNIPS(), "dm": DM(),
        "dr": DR(), "sndr": SNDR(), "switch_dr": SwitchDR(tau),
    }  # fmt: skip
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"estimators: unknown {unknown}; choose from {', '.join(NAMES)}")
    return [known[name] for name in names]


def interval(
    name: str, pieces: Pieces, confidence: float = 0.95, bootstrap: int = 0, seed: int = 0
) -> Estimate:
    """The estimate that `pieces` make, with its normal and (`bootstrap` > 0) bootstrap
    intervals; its rounds are the pieces' entries (rounds, or pages for a page value)."""
    columns, layout = moments.stack(pieces)
    sums = moments.Moments.of(columns, bootstrap, np.random.default_rng(seed))
    return estimate(name, sums, layout, confidence)


def point(pieces: Pieces) -> float:
    return float(sum(num.mean() / (1.0 if den is None else den.mean()) for num, den in pieces))


def estimate(
    name: str, sums: moments.Moments, layout: moments.Layout, confidence: float
) -> Estimate:
    """The estimate, intervals included, that the columns of `layout` make from their sums."""
    value = sums.point(layout)
    error = sums.std_error(layout)
    boot = None
    if len(sums.resampled):
        boot = moments.percentile_bounds(sums.replicates(layout), confidence)
    return Estimate(
        name, value, error, moments.normal_bounds(value, error, confidence), boot, sums.rounds
    )


def mean_estimate(name: str, values: np.ndarray, confidence: float = 0.95) -> Estimate:
    """The plain mean of on-policy rewards (weights all 1), with its normal interval."""
    ones = np.ones(len(values))
    estimate = IPS().interval(OffPolicyData(reward=values, propensity=ones, target_chosen=ones),
                              confidence)  # fmt: skip
    return Estimate(name, estimate.value, estimate.std_error, estimate.normal, None, len(values))


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's (sum w)^2 / sum w^2: how many on-policy rounds the weighted log is worth."""
    squares = float(np.dot(weights, weights))
    return float(weights.sum() ** 2 / squares) if squares > 0 else 0.0
