"""Noticing that the world moved under a slot: its reward per decision over the recent
events, tested against the long run before them.

When tastes change on the same candidates, the model keeps serving what used to pay, and
what it serves now pays less. A constant learning rate and the exploration floor let it
relearn; the detector makes that fast. It watches the treatment's rewards as the learner
learns them: every `window // 4` events it compares the mean of the last `window` with
the mean before them (exponentially forgotten, so a slow seasonal drift moves the
reference along), and fires when the recent mean lies `z` standard errors below it. The
policy then raises its exploration floor for a while (bandit.policies.base, `Boost`).

Only a fall is a change worth acting on: a rise in reward needs no more exploration.
A detector is plain numbers and state, fed in event order, so a replay of the same events
fires at the same events.
"""

from __future__ import annotations

import math
from collections import deque

#: How much of the reference one event's worth of forgetting keeps: the reference's
#: memory is about 20 windows (its half-life about 14).
_MEMORY_WINDOWS = 20


class ChangeDetector:
    """Fires when the mean reward of the last `window` events falls `z` standard errors
    below the mean of the events before them."""

    def __init__(self, window: int, z: float):
        if window < 8:
            raise ValueError(f"window: at least 8 events, got {window}")
        self.window = window
        self.z = z
        self.recent: deque[float] = deque()
        self.recent_sum = 0.0
        self.recent_squares = 0.0
        # the reference: forgotten sums of weight, reward and squared reward
        self.weight = 0.0
        self.total = 0.0
        self.squares = 0.0
        self.keep = 1.0 - 1.0 / (_MEMORY_WINDOWS * window)
        self.seen = 0

    def observe(self, reward: float) -> bool:
        """Add one event's reward; True when this event makes the detector fire."""
        self.recent.append(reward)
        self.recent_sum += reward
        self.recent_squares += reward * reward
        if len(self.recent) > self.window:
            old = self.recent.popleft()
            self.recent_sum -= old
            self.recent_squares -= old * old
            self.weight = self.weight * self.keep + 1.0
            self.total = self.total * self.keep + old
            self.squares = self.squares * self.keep + old * old
        self.seen += 1
        if self.seen % max(self.window // 4, 1) or self.weight < self.window:
            return False
        if not self._fell():
            return False
        self._restart()
        return True

    def _fell(self) -> bool:
        n = len(self.recent)
        recent_mean = self.recent_sum / n
        reference_mean = self.total / self.weight
        recent_var = max(self.recent_squares / n - recent_mean**2, 0.0)
        reference_var = max(self.squares / self.weight - reference_mean**2, 0.0)
        # the pooled variance floors both, so a window of no clicks is not certainty
        pooled = max(recent_var, reference_var)
        error = math.sqrt(pooled / n + pooled / self.weight)
        return error > 0 and recent_mean < reference_mean - self.z * error

    def _restart(self) -> None:
        """After a change, the world before it is no reference: start over from nothing."""
        self.recent.clear()
        self.recent_sum = self.recent_squares = 0.0
        self.weight = self.total = self.squares = 0.0
