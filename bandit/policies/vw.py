"""VW-backed policies: `--cb_explore_adf` for one choice, `--ccb_explore_adf` for rankings."""

from __future__ import annotations

import abc
import os
import shlex
import tempfile
from collections.abc import Sequence
from typing import Any

import pylibvw
import vowpalwabbit

from bandit.contracts.events import Candidate, Context, RewardedEvent
from bandit.contracts.slots import SlotConfig
from bandit.policies import encoding
from bandit.policies.base import (
    Choice,
    Policy,
    argmax,
    default_first,
    default_share,
    sample_index,
)


class VWError(ValueError):
    """VW refused its arguments or a model file."""


def vw_arguments(slot: SlotConfig, reduction: str, fresh: bool = True) -> list[str]:
    """The full VW argument list of a slot: reduction, explorer, interactions, extras.

    A saved model keeps VW's RNG state as its `random_seed`, so only a `fresh` model is seeded.
    """
    seed = ["--random_seed", str(slot.seed)] if slot.seed is not None and fresh else []
    return [
        f"--{reduction}",
        *slot.exploration.vw_args(),
        *("--learning_rate", repr(slot.learning_rate)),
        *("--power_t", repr(slot.learning_rate_decay)),
        *("--clip_p", repr(1.0 / slot.importance_weight_cap)),
        # a cost lies in [0, reward.max]: a prediction outside it is noise that would rank
        # a candidate below one that never pays
        *("--min_prediction", "0", "--max_prediction", repr(slot.reward.max)),
        *encoding.interaction_args(slot.interactions, slot.lrq),
        *seed,
        "--quiet",
        *shlex.split(slot.vw_args),
    ]


class _VWPolicy(Policy):
    type_name = "vw"
    reduction: str

    def __init__(self, slot: SlotConfig, model_path: str | None = None):
        super().__init__(slot)
        args = vw_arguments(slot, self.reduction, fresh=model_path is None)
        if model_path is not None:
            args += ["--initial_regressor", model_path]
        try:
            self.workspace = vowpalwabbit.Workspace(arg_list=args)
        except RuntimeError as exc:
            raise VWError(f"VW refused {shlex.join(args)!r}: {exc}") from None
        self._loaded = model_path is not None

    @property
    def cold(self) -> bool:
        """True before the first example (a loaded model counts as taught). VW then scores
        every candidate alike, so its explorer would serve them uniformly; a cold policy
        serves the editorial default instead, with `exploration.epsilon` spread over the
        rest: no worse than the control group from its first page, and still exploring."""
        return self.examples_learned == 0 and not self._loaded

    def _decide(
        self, context: Context, candidates: Sequence[Candidate], count: int, greedy: bool
    ) -> Choice:
        if self.cold:
            return self._cold_choice(candidates, count, greedy)
        return self._vw_decide(context, candidates, count, greedy)

    def _probabilities(
        self,
        context: Context,
        candidates: Sequence[Candidate],
        placed: Sequence[int],
        remaining: list[int],
    ) -> Sequence[float]:
        if self.cold:
            return default_first(candidates, remaining, self.slot.exploration.epsilon)
        return self._vw_probabilities(context, candidates, placed, remaining)

    @abc.abstractmethod
    def _vw_decide(
        self, context: Context, candidates: Sequence[Candidate], count: int, greedy: bool
    ) -> Choice:
        """`_decide` once the policy has learned something: VW's own explorer."""

    @abc.abstractmethod
    def _vw_probabilities(
        self,
        context: Context,
        candidates: Sequence[Candidate],
        placed: Sequence[int],
        remaining: list[int],
    ) -> Sequence[float]:
        """`_probabilities` once the policy has learned something."""

    def _cold_choice(self, candidates: Sequence[Candidate], count: int, greedy: bool) -> Choice:
        placed: list[int] = []
        probabilities: list[float] = []
        explored = False
        default = None
        for _ in range(count):
            remaining = [i for i in range(len(candidates)) if i not in placed]
            pmf = default_first(candidates, remaining, self.slot.exploration.epsilon)
            if count == 1:
                default = default_share(candidates, remaining, pmf)
            best = argmax(pmf)
            index, probability = (best, pmf[best]) if greedy else sample_index(pmf, self.rng)
            explored = explored or index != best
            placed.append(remaining[index])
            probabilities.append(probability)
        chosen = tuple(candidates[i].id for i in placed)
        return Choice(chosen, tuple(probabilities), explored, default)

    def _cost(self, reward: float) -> float:
        """VW minimises a cost: here the reward short of the slot's maximum. A candidate or
        feature never tried (weights still 0) then looks as good as the best possible, so
        the explorer tries it before trusting what it has seen, instead of locking onto the
        first candidate that paid anything (which a cost of -reward does when every
        reward is positive)."""
        return self.slot.reward.max - reward

    def to_bytes(self) -> bytes:
        with tempfile.TemporaryDirectory(prefix="artbandit-vw-") as tmp:
            path = os.path.join(tmp, "model.vw")
            self.workspace.save(path)
            with open(path, "rb") as fh:
                return fh.read()

    @classmethod
    def from_bytes(cls, slot: SlotConfig, state: bytes) -> _VWPolicy:
        with tempfile.TemporaryDirectory(prefix="artbandit-vw-") as tmp:
            path = os.path.join(tmp, "model.vw")
            with open(path, "wb") as fh:
                fh.write(state)
            return cls(slot, model_path=path)

    def close(self) -> None:
        self.workspace.finish()

    def _predict_lines(self, lines: list[str]) -> list[Any]:
        """VW's prediction for one multi-line example through its native calls (3x faster
        than `Workspace.predict`): a pmf for `cb_explore_adf`, per-slot (action, probability)
        lists for `ccb_explore_adf`."""
        examples = self.workspace._parse("\n".join(lines))
        try:
            pylibvw.vw.predict_multi(self.workspace, examples)
            head = examples[0]
            scores: list[Any] = (
                head.get_decision_scores()
                if self.reduction.startswith("ccb")
                else (head.get_action_scores())
            )
        finally:
            pylibvw.vw._finish_example_multi_ex(self.workspace, examples)
        return scores

    def _learn_lines(self, lines: list[str]) -> None:
        """Learn one multi-line example through VW's native calls: the same update as
        `Workspace.learn`, without its per-line Python wrappers (3x faster for 10 actions)."""
        examples = self.workspace._parse("\n".join(lines))
        try:
            pylibvw.vw.learn_multi(self.workspace, examples)
        finally:
            pylibvw.vw._finish_example_multi_ex(self.workspace, examples)


class VWChoicePolicy(_VWPolicy):
    """Artwork and hero: one candidate, sampled from VW's exploring pmf with our seeded RNG."""

    reduction = "cb_explore_adf"

    def _vw_decide(
        self, context: Context, candidates: Sequence[Candidate], count: int, greedy: bool
    ) -> Choice:
        pmf = self._predict_lines(encoding.cb_example(context, candidates))
        best = argmax(pmf)
        default = default_share(candidates, range(len(candidates)), pmf)
        if greedy:
            index, probability = best, pmf[best] / sum(pmf)
        else:
            index, probability = sample_index(pmf, self.rng)
        return Choice((candidates[index].id,), (probability,), index != best, default)

    def _vw_probabilities(
        self,
        context: Context,
        candidates: Sequence[Candidate],
        placed: Sequence[int],
        remaining: list[int],
    ) -> Sequence[float]:
        return self._predict_lines(encoding.cb_example(context, candidates))

    def _learn(self, event: RewardedEvent) -> None:
        (index,) = event.chosen_indices()
        label = (index, self._cost(event.rewards[0]), event.probabilities[0])
        self._learn_lines(encoding.cb_example(event.context, event.candidates, label))


class VWRowsPolicy(_VWPolicy):
    """Row order: one CCB slot per position. VW samples each position from its pmf over the
    rows not yet placed (its RNG is seeded by the slot's `seed`), so the probability VW
    reports first for a position is exactly the conditional propensity of the row it placed.
    """

    reduction = "ccb_explore_adf"

    def _vw_decide(
        self, context: Context, candidates: Sequence[Candidate], count: int, greedy: bool
    ) -> Choice:
        if greedy:
            return self._greedy(context, candidates, count)
        slots = self._predict_lines(encoding.ccb_example(context, candidates, count))
        chosen, probabilities, explored = [], [], False
        for scores in slots:
            action, probability = scores[0]
            chosen.append(candidates[action].id)
            probabilities.append(probability)
            explored = explored or probability < max(p for _, p in scores)
        return Choice(tuple(chosen), tuple(probabilities), explored)

    def _drawn_ranking(
        self, context: Context, candidates: Sequence[Candidate], count: int
    ) -> Choice:
        """The floored ranking in as few VW predicts as it can: VW samples every position
        left from its pmf over the rows it left, given the rows placed above, and each
        position keeps VW's row with probability 1 - floor or takes a uniform one of the
        free rows, which is a draw from the floored pmf. A uniform row other than VW's
        changes what is above the positions after it, so those are predicted again, given
        it (one predict per such row, not per position)."""
        if self.cold:
            return super()._drawn_ranking(context, candidates, count)
        floor = self.exploration_floor
        placed: list[int] = []
        probabilities: list[float] = []
        explored = False
        while len(placed) < count:
            lines = encoding.ccb_example(context, candidates, count - len(placed), placed=placed)
            for scores in self._predict_lines(lines)[len(placed) :]:
                pmf = dict(scores)
                total = sum(pmf.values())
                action = scores[0][0]
                if self.rng.random() < floor:
                    action = int(self.rng.choice(list(pmf)))
                placed.append(action)
                probabilities.append((1.0 - floor) * pmf[action] / total + floor / len(pmf))
                explored = explored or pmf[action] < max(pmf.values())
                if action != scores[0][0]:
                    break  # VW drew the positions below given another row here
        chosen = tuple(candidates[i].id for i in placed)
        return Choice(chosen, tuple(probabilities), explored)

    def _greedy(self, context: Context, candidates: Sequence[Candidate], count: int) -> Choice:
        """Place the most probable remaining row at each position in turn."""
        placed: list[int] = []
        probabilities = []
        for _ in range(count):
            pmf = self._next(context, candidates, placed)
            action, probability = max(pmf.items(), key=lambda item: item[1])
            placed.append(action)
            probabilities.append(probability)
        chosen = tuple(candidates[i].id for i in placed)
        return Choice(chosen, tuple(probabilities), explored=False)

    def _vw_probabilities(
        self,
        context: Context,
        candidates: Sequence[Candidate],
        placed: Sequence[int],
        remaining: list[int],
    ) -> Sequence[float]:
        pmf = self._next(context, candidates, placed)
        return [pmf.get(i, 0.0) for i in remaining]

    def _next(
        self, context: Context, candidates: Sequence[Candidate], placed: Sequence[int]
    ) -> dict[int, float]:
        """VW's pmf over the free rows for the position after `placed`."""
        taken = set(placed)
        free = [i for i in range(len(candidates)) if i not in taken]
        lines = encoding.ccb_example(context, candidates, 1, include=free, placed=placed)
        return dict(self._predict_lines(lines)[-1])

    def _learn(self, event: RewardedEvent) -> None:
        labels = [
            (index, self._cost(reward), probability)
            for index, reward, probability in zip(
                event.chosen_indices(), event.rewards, event.probabilities, strict=True
            )
        ]
        self._learn_lines(
            encoding.ccb_example(event.context, event.candidates, len(labels), labels)
        )
