"""Writes obp's slate estimates on the Plackett-Luce rows logs of `plackett_luce`, for
test_rows_replay to compare with to 1e-9. Run it in a venv of its own that has obp (obp pins
old releases the project's lock does not allow) and msgspec:

    python -m venv /tmp/obp && /tmp/obp/bin/pip install --no-deps obp==0.4.1 && \\
        /tmp/obp/bin/pip install numpy scipy scikit-learn pandas tqdm matplotlib seaborn \\
        pyyaml mypy-extensions msgspec
    PYTHONPATH=. /tmp/obp/bin/python tests/replay/obp_rows_reference.py \\
        > tests/replay/obp_rows_reference.json
"""

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
from obp.ope import SlateRewardInteractionIPS, SlateStandardIPS  # noqa: E402

from tests.replay import plackett_luce as pl  # noqa: E402

SEEDS, PAGES = range(5), 2000


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
    return {
        "seed": seed,
        "pages": PAGES,
        "slate_reward_interaction_ips": interaction,
        "slate_standard_ips": standard,
    }


if __name__ == "__main__":
    rows = [reference(seed) for seed in SEEDS]
    json.dump({"obp": obp.__version__, "logs": rows}, sys.stdout, indent=2)
    sys.stdout.write("\n")
