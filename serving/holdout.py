"""Sticky, salted holdout and the user hash that replaces raw ids in every event.

A person's bucket is a keyed hash of their id, uniform in [0, 1): the same person lands in
the same bucket for a given salt, on every replica, and the salt keeps buckets unguessable.
A slot with `holdout_fraction` f puts buckets below f in `control`, so with equal fractions a
person is in control for the whole page.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np

from bandit.contracts.events import Group
from bandit.policies.exposure import consistent_draw


class Holdout:
    def __init__(self, holdout_salt: str, user_hash_salt: str, seed: int | None = None):
        self._holdout_key = holdout_salt.encode()
        self._user_key = user_hash_salt.encode()
        self._rng = np.random.default_rng(seed)

    def salted_with(self, holdout_salt: str, user_hash_salt: str) -> bool:
        return (self._holdout_key, self._user_key) == (
            holdout_salt.encode(),
            user_hash_salt.encode(),
        )

    def user_hash(self, user_id: str | None) -> str | None:
        """The pseudonymous id logged instead of `user_id` (None for anonymous visitors)."""
        if user_id is None:
            return None
        return hmac.new(self._user_key, user_id.encode(), hashlib.sha256).hexdigest()[:32]

    def bucket(self, user_id: str | None) -> float:
        """Uniform in [0, 1): fixed per user id and salt; drawn afresh for anonymous visitors."""
        if user_id is None:
            return float(self._rng.random())
        digest = hmac.new(self._holdout_key, user_id.encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def draw(self, user_id: str, slot: str, key: str, ts: float, period_s: float) -> float:
        """The person's consistent draw for a key this period (bandit.policies.exposure),
        keyed by the holdout salt: rotating it redraws every person's choices too."""
        return consistent_draw(self._holdout_key, user_id, slot, key, ts, period_s)

    @staticmethod
    def group(bucket: float, fraction: float) -> Group:
        return "control" if bucket < fraction else "treatment"
