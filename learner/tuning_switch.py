"""Following a slot's tuning history: when the tuner or an operator asks for other settings
than a slot's policy learns under, a new policy under them learns the slot's most recent
`tuning.window_events` treatment events from the rewarded topic, once each, and takes over.

Right after a checkpoint every output is acknowledged, so the rewarded topic holds every
event the policy has learned. The learner switches there, before its next record; the next
checkpoint, forced at once, makes the switch durable, and a crash before it restarts from
the old policy, which switches again the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from kafka.errors import KafkaError

from bandit.config import Config
from bandit.learning.tuning import Tuned, TunedPolicies, tuned_slot, warm_start
from bandit.policies import policy_class
from kafkaio.forked import run_forked
from kafkaio.read import Recent, TopicMissing, decoded, recent_treatment_messages
from learner.cadence import Cadence
from learner.metrics import LearnerMetrics
from learner.publisher import Publishing
from storage.model_store import ModelStore, ModelStoreError

log = logging.getLogger(__name__)

TUNING_RETRY_S = 30.0  # after a switch failed on Kafka, so retries never starve the poll


class TuningSwitch:
    """The part of a learner that switches its slots to the settings their history asks
    for. `window(slot)` gives the slot's newest `tuning.window_events` treatment events the
    learner has learned, oldest first (`rewarded_treatment`); a switch is checkpointed and
    published at once (`cadence`, `publishing`). The window is read and learned in a
    forked child (`kafkaio.forked`)."""

    def __init__(
        self,
        config: Config,
        store: ModelStore,
        metrics: LearnerMetrics,
        window: Callable[[str], list[Recent]],
        cadence: Cadence,
        publishing: Publishing,
    ):
        self.config = config
        self.store = store
        self.metrics = metrics
        self.window = window
        self.cadence = cadence
        self.publishing = publishing
        self.refused: set[tuple[str, Tuned]] = set()

    def follow(
        self, core: TunedPolicies, caught_up: Callable[[], bool], possible: bool = True
    ) -> None:
        """Read the history once more (unless not `possible`: a member with no partitions),
        switch the slots it asks to switch, and have each switch checkpointed and published
        at once; after a switch that failed on Kafka, read again later."""
        self.cadence.tuning_read()
        if not possible:
            return
        changed, failed = self._follow(core, caught_up)
        if failed:
            self.cadence.tuning_read(retry_s=TUNING_RETRY_S)
        for slot in changed:
            self.cadence.force()
            self.publishing.forget(slot)

    def _follow(self, core: TunedPolicies, caught_up: Callable[[], bool]) -> tuple[list[str], bool]:
        """Switch or relabel each slot whose history asks for other settings. Returns the
        slots that changed (to checkpoint and publish at once) and whether a switch failed
        on Kafka (to read the history again later rather than at the next checkpoint)."""
        changed: list[str] = []
        failed = False
        for slot, policy in list(core.policies.items()):
            if policy.slot.policy != "vw" or slot not in self.config.slots:  # shadows: fixed
                continue
            try:
                state = self.store.tuning(slot)
            except (OSError, ModelStoreError) as exc:
                log.error("slot %s: cannot read its tuning history: %s", slot, exc)
                continue
            self.metrics.tuning_wanted_revision.labels(slot).set(state.revision)
            running = core.tuned(slot)
            wanted = Tuned(state.revision, tuple(state.overrides))
            if wanted.revision == running.revision or (slot, wanted) in self.refused:
                continue
            if wanted.overrides == running.overrides:  # e.g. a pin of what runs: relabel
                core.tuning[slot] = wanted
            elif not caught_up():
                log.info("slot %s: switching to tuning revision %d once the inputs are read "
                         "to their end", slot, wanted.revision)  # fmt: skip
                continue
            elif not self._switched(core, slot, wanted):
                failed = failed or (slot, wanted) not in self.refused
                continue
            self.metrics.tuning_revision.labels(slot).set(wanted.revision)
            changed.append(slot)
        return changed, failed

    def _switched(self, core: TunedPolicies, slot: str, wanted: Tuned) -> bool:
        """Switch `slot` to `wanted`; False (logged, counted) when it could not."""
        try:
            self._switch(core, slot, wanted)
        except ValueError as exc:  # settings the config refuses: not retried
            self.refused.add((slot, wanted))
            self.metrics.tuning_failures.labels(slot).inc()
            log.error("slot %s: tuning revision %d refused: %s", slot, wanted.revision, exc)
            return False
        except (KafkaError, TopicMissing, OSError) as exc:
            self.metrics.tuning_failures.labels(slot).inc()
            log.error("slot %s: switch to tuning revision %d failed, will retry in %.0f s: %s",
                      slot, wanted.revision, TUNING_RETRY_S, exc)  # fmt: skip
            return False
        return True

    def _switch(self, core: TunedPolicies, slot: str, wanted: Tuned) -> None:
        started = time.perf_counter()
        slot_config = tuned_slot(slot, self.config.slots[slot], wanted.overrides)

        def warm_started() -> tuple[bytes, int]:
            """The window read and learned, as the new policy's state and its count."""
            policy = warm_start(slot_config, decoded(self.window(slot)))
            try:
                return policy.to_bytes(), policy.examples_learned
            finally:
                policy.close()

        # in a child, whose hundreds of megabytes go with it (kafkaio.forked)
        state, learned = run_forked(warm_started)
        policy = policy_class(slot_config).from_bytes(slot_config, state)
        policy.examples_learned = learned
        core.switch(slot, wanted, policy)
        self.metrics.tuning_switches.labels(slot).inc()
        log.info(
            "slot %s: switched to tuning revision %d (%s), warm-started on %d events in %.1f s",
            slot, wanted.revision, " ".join(wanted.overrides) or "configured settings",
            policy.examples_learned, time.perf_counter() - started,
        )  # fmt: skip


def rewarded_treatment(
    config: Config,
    bootstrap_servers: str,
    slot: str,
    partitions: set[int] | None = None,
    before: Mapping[int, int] | None = None,
) -> list[Recent]:
    """The slot's newest `tuning.window_events` treatment events on the rewarded topic (see
    `recent_treatment_messages`), each decision once, oldest first, as read: a switch reads
    only its window, however long the topic, and decodes each event as it learns it."""
    kafka = config.kafka
    return recent_treatment_messages(
        kafka, bootstrap_servers, kafka.topics.rewarded, slot, config.tuning.window_events,
        partitions, before,
    )  # fmt: skip
