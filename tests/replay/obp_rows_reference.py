"""Writes obp's slate estimates on the Plackett-Luce rows logs of `plackett_luce`, for
test_rows_replay to compare with to 1e-9. Run it in a venv of its own that has obp (obp pins
old releases the project's lock does not allow) and msgspec:

    python -m venv /tmp/obp && /tmp/obp/bin/pip install --no-deps obp==0.4.1 && \\
        /tmp/obp/bin/pip install numpy scipy scikit-learn pandas tqdm matplotlib seaborn \\
        pyyaml mypy-extensions msgspec
    PYTHONPATH=. /tmp/obp/bin/python tests/replay/obp_rows_reference.py \\
        > tests/replay/obp_rows_reference.json
"""

import itertools
import json
import sys

import numpy as np

# obp 0.4.1 imports torch when it loads, for its neural-network policies and estimators;
# the slate estimators compared here are numpy only, and PyPI's Linux torch needs CUDA
# libraries, so this venv gets an empty stand-in with the names obp touches at import time.


class _Stand_in(type):
    """Any attribute of it is another stand-in class: subclassable, never a real tensor."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Stand_in(name, (), {})


torch = _Stand_in("torch", (), {})
sys.modules.update({"torch": torch, "torch.nn": torch.nn, "torch.optim": torch.optim})

import obp  # noqa: E402
from obp.ope import (  # noqa: E402
    SlateIndependentIPS,
    SlateRewardInteractionIPS,
    SlateStandardIPS,
)

from tests.replay import plackett_luce as pl  # noqa: E402

SEEDS, PAGES = range(5), 2000


def marginals(weights: np.ndarray) -> np.ndarray:
    """(positions, rows) a Plackett-Luce ranking's probability of each row at each position,
    summed over all orderings."""
    out = np.zeros((pl.POSITIONS, len(weights)))
    for order in itertools.permutations(range(len(weights)), pl.POSITIONS):
        chance = np.prod([pl.conditional(weights, list(order[:k]))[order[k]]
                          for k in range(pl.POSITIONS)])  # fmt: skip
        out[np.arange(pl.POSITIONS), list(order)] += chance
    return out


def reference(seed: int) -> dict:
    log = pl.logged_pages(PAGES, seed)
    orders = np.asarray([[pl.ROWS.index(row) for row in event.chosen] for event in log])
    logger = np.asarray([event.probabilities for event in log])
    target = np.take_along_axis(pl.conditionals(pl.TARGET, orders), orders[:, :, None], 2)[..., 0]
    common = dict(
        slate_id=np.repeat(np.arange(PAGES), pl.POSITIONS),
        reward=np.asarray([event.rewards for event in log]).ravel(),
        position=np.tile(np.arange(pl.POSITIONS), PAGES),
    )
    interaction = SlateRewardInteractionIPS(len_list=pl.POSITIONS).estimate_policy_value(
        **common,
        pscore_cascade=np.cumprod(logger, axis=1).ravel(),
        evaluation_policy_pscore_cascade=np.cumprod(target, axis=1).ravel(),
    )
    page = np.repeat(np.prod(logger, axis=1), pl.POSITIONS)
    standard = SlateStandardIPS(len_list=pl.POSITIONS).estimate_policy_value(
        **common,
        pscore=page,
        evaluation_policy_pscore=np.repeat(np.prod(target, axis=1), pl.POSITIONS),
    )
    positions = np.arange(pl.POSITIONS)
    independent = SlateIndependentIPS(len_list=pl.POSITIONS).estimate_policy_value(
        **common,
        pscore_item_position=marginals(pl.LOGGER)[positions, orders].ravel(),
        evaluation_policy_pscore_item_position=marginals(pl.TARGET)[positions, orders].ravel(),
    )
    return {
        "seed": seed,
        "pages": PAGES,
        "slate_reward_interaction_ips": interaction,
        "slate_standard_ips": standard,
        "slate_independent_ips": independent,
    }


if __name__ == "__main__":
    rows = [reference(seed) for seed in SEEDS]
    json.dump({"obp": obp.__version__, "logs": rows}, sys.stdout, indent=2)
    sys.stdout.write("\n")
