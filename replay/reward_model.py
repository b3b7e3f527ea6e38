"""The reward model q(x, a) that DM, DR, SNDR and Switch-DR lean on: VW regression on the log.

A VW squared-loss regression of each logged reward on the person, request and candidate
features with the slot's interactions; for rows the position is a feature too.
Cross-fitting keeps the model honest: the rounds are split in two seeded folds, each fold
is predicted by the model trained on the other, so no round is scored by a model that saw
its own reward (which would flatter DR).
"""

from __future__ import annotations

import numpy as np
import vowpalwabbit

from bandit.contracts.slots import SlotConfig
from bandit.policies import encoding
from replay.progress import Progress
from replay.rounds import Rounds


def fit_predict(rounds: Rounds, slot: SlotConfig, seed: int = 0, quiet: bool = True) -> np.ndarray:
    """q: (n, width) predicted rewards of every candidate at every round, cross-fitted."""
    q = np.zeros((len(rounds), rounds.width))
    fold = np.random.default_rng(seed).integers(0, 2, size=len(rounds))
    progress = Progress(2 * len(rounds), "fitting the reward model", quiet=quiet)
    done = 0
    for held_out in (0, 1):
        model = Regression(slot)
        try:
            for i in np.flatnonzero(fold != held_out).tolist():
                model.learn(rounds, i)
                done += 1
                if done % 4096 == 0:
                    progress.update(done)
            for i in np.flatnonzero(fold == held_out).tolist():
                values = model.predict(rounds, i)
                q[i, : len(values)] = values
                done += 1
                if done % 4096 == 0:
                    progress.update(done)
        finally:
            model.close()
    progress.close()
    return q


class Regression:
    """Squared-loss VW regression of the reward on one (context, candidate) line. For the
    reward model, a constant learning rate (`power_t` 0) fits these small, stationary logs
    better than VW's decaying default; tuning judges a slot's own rate (`power_t` None:
    VW's default, as the slot's policy learns)."""

    def __init__(self, slot: SlotConfig, learning_rate: float = 0.1, power_t: float | None = 0):
        interactions = list(slot.interactions) + (["SA"] if slot.kind.ranked else [])
        decay = ["--power_t", repr(power_t)] if power_t is not None else []
        args = ["--quiet", "--random_seed", "0", *decay, "-l", repr(learning_rate),
                *encoding.interaction_args(interactions, slot.lrq)]  # fmt: skip
        self.workspace = vowpalwabbit.Workspace(arg_list=args)
        self.reward_max = slot.reward.max

    def learn(self, rounds: Rounds, i: int, weight: float = 1.0) -> None:
        event = rounds.events[rounds.event_index[i]]
        shared = _shared(rounds, i)
        action = encoding.action_text(event.candidates[rounds.chosen[i]])
        label = f"{float(rounds.reward[i])!r}" + (f" {float(weight)!r}" if weight != 1.0 else "")
        self.workspace.learn(f"{label} {shared} {action}")

    def predict_chosen(self, rounds: Rounds, i: int) -> float:
        """The predicted reward of round `i`'s logged candidate, clipped to the reward range."""
        event = rounds.events[rounds.event_index[i]]
        text = f"{_shared(rounds, i)} {encoding.action_text(event.candidates[rounds.chosen[i]])}"
        return float(np.clip(self.workspace.predict(text), 0.0, self.reward_max))

    def predict(self, rounds: Rounds, i: int) -> list[float]:
        event = rounds.events[rounds.event_index[i]]
        shared = _shared(rounds, i)
        values = [
            self.workspace.predict(f"{shared} {encoding.action_text(c)}") for c in event.candidates
        ]
        # Rewards are bounded: a regression may overshoot, the truth cannot.
        result: list[float] = np.clip(
            np.asarray(values, dtype=float), 0.0, self.reward_max
        ).tolist()
        return result

    def close(self) -> None:
        self.workspace.finish()


def _shared(rounds: Rounds, i: int) -> str:
    event = rounds.events[rounds.event_index[i]]
    text = encoding.shared_text(event.context)
    if len(event.chosen) > 1:  # rows: the position is context
        text += f" |Slot p{rounds.position[i]}"
    return text
