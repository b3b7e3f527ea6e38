"""Publishing policy versions: into the model store, then onto the compacted models topic.

The topic message is the version file itself (key: the slot), so a serving replica that does
not share the store's disk can install it; one that does finds it already there. Compaction
keeps the newest version per slot, which is all a replica starting up needs to read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from bandit.learning.tuning import Tuned, TunedPolicies
from bandit.policies import Policy
from learner.metrics import LearnerMetrics
from storage.model_store import ModelStore, ModelStoreError, VersionInfo

log = logging.getLogger(__name__)


class ModelPublisher:
    def __init__(self, store: ModelStore, send: Callable[[str, bytes], None]):
        """`send(slot, version_file)` puts one announcement on the models topic."""
        self.store = store
        self.send = send
        self._published: dict[str, int] = {}  # slot -> examples_learned when last published

    def forget(self, slot: str) -> None:
        """Publish `slot` next time even if its count of examples is the same (a switch)."""
        self._published.pop(slot, None)

    def publish(
        self, policies: Mapping[str, Policy], tuning: Mapping[str, Tuned] | None = None
    ) -> list[VersionInfo]:
        """Store and announce a version of every slot that learned since its last one,
        naming the tuned settings it learned under."""
        published = []
        for slot, policy in policies.items():
            if policy.examples_learned == 0:
                continue  # nothing learned yet: serving keeps what it has
            if self._published.get(slot) == policy.examples_learned:
                continue
            tuned = (tuning or {}).get(slot, Tuned())
            info = self.store.save(slot, policy, tuned.revision, list(tuned.overrides))
            self.send(slot, self.store.version_file(slot, info.version))
            self._published[slot] = policy.examples_learned
            log.info("published %s/%s (%d examples)", slot, info.version, info.examples_learned)
            published.append(info)
        return published


class Publishing:
    """A learner's publishing part: a version of each policy that learned since its last,
    and, beside it, what each slot's change detector saw and the floor it explores with."""

    def __init__(self, publisher: ModelPublisher, metrics: LearnerMetrics):
        self.publisher = publisher
        self.metrics = metrics
        self._changes_counted: dict[str, int] = {}  # changes_detected as the metric has it

    def forget(self, slot: str) -> None:
        self.publisher.forget(slot)

    def publish(self, core: TunedPolicies) -> None:
        try:
            published = self.publisher.publish(core.policies, core.tuning)
        except (OSError, ModelStoreError) as exc:
            log.error("publishing a policy version failed, will retry: %s", exc)
            return
        for info in published:
            self.metrics.published_version.labels(info.slot).set(int(info.version[1:]))
        for slot, policy in core.policies.items():
            changes = policy.changes_detected - self._changes_counted.get(slot, 0)
            if changes > 0:
                log.warning("slot %s: its treatment reward fell (%d change(s) detected); "
                            "exploring more for a while", slot, changes)  # fmt: skip
                self.metrics.world_changes.labels(slot).inc(changes)
            self._changes_counted[slot] = policy.changes_detected
            self.metrics.exploration_floor.labels(slot).set(policy.exploration_floor)
