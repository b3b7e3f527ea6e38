"""What a person is shown beyond what the policy prefers: an exposure floor for candidates
that need to be seen (new or long-tail titles), and draws that stay fixed for a person, a
key and a period (the same artwork for a title on every visit of a day).

Both keep logged propensities exact: the floor changes the pmf a choice is drawn from (and
logged with), and a consistent draw is an inverse-CDF draw from that pmf with a uniform
number that is a keyed hash instead of a fresh random one. Over people and periods the
hash is uniform, so each choice still has exactly its logged probability.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import numpy as np


def floored(pmf: np.ndarray, flagged: Sequence[bool], floor: float) -> np.ndarray:
    """`pmf` with every flagged candidate at `floor` or more (at most 1/flagged each), the
    mass taken from the others in proportion to theirs: the least change that meets the
    floor. Water-filling: raising one candidate scales the rest down, which may push
    another flagged one under, so it repeats until none is (at most once per flagged)."""
    flags = np.asarray(flagged, dtype=bool)
    if floor <= 0 or not flags.any():
        return pmf
    level = min(floor, 1.0 / int(flags.sum()))
    pinned = np.zeros(len(pmf), dtype=bool)
    out = np.asarray(pmf, dtype=float)
    for _ in range(int(flags.sum())):
        under = flags & ~pinned & (out < level)
        if not under.any():
            break
        pinned |= under
        free = ~pinned
        left = 1.0 - level * int(pinned.sum())
        mass = float(pmf[free].sum())
        if mass > 0:
            rest = pmf * (left / mass)
        else:  # the others had nothing: what is left is shared evenly (none left if all pinned)
            rest = np.full(len(pmf), left / max(int(free.sum()), 1))
        out = np.where(pinned, level, rest)
    return out


def consistent_draw(
    secret: bytes, user: str, slot: str, key: str, ts: float, period_s: float
) -> float:
    """A uniform number in [0, 1), fixed for one person, slot, key and period of
    `period_s` seconds (periods start at the Unix epoch), unguessable without `secret`."""
    period = int(ts // period_s)
    message = f"{slot}\x1f{key}\x1f{period}\x1f{user}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
