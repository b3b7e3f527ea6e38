"""Self-tuning state: which learning settings a slot runs, and how it came to run them.

A slot's configured settings are the base; tuning lays `key=value` overrides over them (the
learning rate, the explorer's parameters, interactions), never over what defines the slot
(its kind, rewards, holdout, attribution window). The tuner proposes a new set when it
measured a significant gain on the slot's own log; an operator can pin a set or roll back.
Each change is a new *revision* in the slot's history, so the learner, which switches when
the wanted revision differs from the one its model was learned with, sees a rollback like
any other change, and every version it publishes names the revision it was learned under.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TypedDict

import msgspec

from bandit.config import override_slot, tunable_key
from bandit.contracts.events import RewardedEvent
from bandit.contracts.slots import SlotConfig
from bandit.policies import Policy, build_policy

KEEP_RECORDS = 50


class TuningError(ValueError):
    """A tuning change that cannot be made (unknown revision, nothing to roll back to)."""


class Tuned(msgspec.Struct, frozen=True):
    """The tuned settings a model learned under: a revision and its overrides."""

    revision: int = 0
    overrides: tuple[str, ...] = ()


class TuningRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One revision of a slot's tuned settings, with the evidence for it."""

    revision: int
    at: float
    overrides: list[str]  # `key=value` over the configured slot
    reason: str  # tuned | pinned | unpinned | rolled back
    by: str  # tuner | admin
    # The tuner's evidence: the replayed reward per decision of the new settings and of the
    # ones they replaced, on `events` logged decisions, and the gain's lower bound.
    value: float | None = None
    baseline: float | None = None
    gain: float | None = None
    lower_bound: float | None = None
    events: int = 0


class TuningState(msgspec.Struct, frozen=True, kw_only=True):
    """A slot's tuning history, newest last; the last record is what the slot should run."""

    slot: str
    history: list[TuningRecord] = msgspec.field(default_factory=list)
    pinned: bool = False  # the tuner leaves a pinned slot alone
    # The settings that won the tuner's last rounds in a row (not yet a revision: a winner
    # must win `tuning.confirmations` rounds running before the slot switches to it).
    proposal: list[str] | None = None
    proposal_rounds: int = 0

    @property
    def active(self) -> TuningRecord | None:
        return self.history[-1] if self.history else None

    @property
    def revision(self) -> int:
        return self.history[-1].revision if self.history else 0

    @property
    def overrides(self) -> list[str]:
        return list(self.history[-1].overrides) if self.history else []

    def record(
        self, overrides: list[str], reason: str, by: str, *, at: float, **evidence: float | int
    ) -> TuningState:
        """The state after a change to `overrides` (a new revision) at time `at` (epoch s)."""
        entry = TuningRecord(
            revision=self.revision + 1,
            at=at,
            overrides=list(overrides),
            reason=reason,
            by=by,
            **evidence,  # type: ignore[arg-type]
        )
        history = [*self.history, entry][-KEEP_RECORDS:]
        pinned = {"pinned": True, "unpinned": False}.get(reason, self.pinned)
        return msgspec.structs.replace(
            self, history=history, pinned=pinned, proposal=None, proposal_rounds=0
        )

    def propose(self, overrides: list[str] | None) -> TuningState:
        """The state after a tuning round whose significant winner was `overrides` (None:
        no winner): a winner of the round before counts one more round, anything else
        starts over."""
        if overrides is None:
            return msgspec.structs.replace(self, proposal=None, proposal_rounds=0)
        rounds = self.proposal_rounds + 1 if self.proposal == list(overrides) else 1
        return msgspec.structs.replace(self, proposal=list(overrides), proposal_rounds=rounds)

    def pin(self, revision: int | None = None, *, at: float) -> TuningState:
        """Pin the settings of `revision` (default: the active ones; 0: the configured ones,
        the revision a slot runs before any tuning)."""
        if revision == 0:
            return self.record([], "pinned", "admin", at=at)
        source = self.active if revision is None else self._find(revision)
        return self.record(source.overrides if source else [], "pinned", "admin", at=at)

    def unpin(self, *, at: float) -> TuningState:
        return self.record(self.overrides, "unpinned", "admin", at=at)

    def rollback(self, *, at: float) -> TuningState:
        """Back to the settings before the active ones, pinned so the tuner does not switch
        straight back."""
        current = self.overrides
        for entry in reversed(self.history[:-1]):
            if entry.overrides != current:
                return self.record(entry.overrides, "pinned", "admin", at=at)
        if current:
            return self.record([], "pinned", "admin", at=at)  # back to the configured settings
        raise TuningError(f"slot {self.slot}: the configured settings run, nothing to roll back")

    def _find(self, revision: int) -> TuningRecord:
        for entry in self.history:
            if entry.revision == revision:
                return entry
        known = ", ".join(str(e.revision) for e in self.history) or "none"
        raise TuningError(f"slot {self.slot}: no revision {revision} (kept: {known})")


class Held(TypedDict, total=False):
    """What a learner's core starts from (each optional): policies by key, the examples each
    learned here, and the tuned settings each learns under."""

    policies: Mapping[str, Policy]
    learned_here: Mapping[str, int]
    tuning: Mapping[str, Tuned]


class TunedPolicies:
    """A learner's policies by key, with the tuned settings each learns under (a key not in
    `tuning` learns under the configured ones) and the examples each learned here."""

    policies: dict[str, Policy]
    tuning: dict[str, Tuned]
    learned_here: Counter[str]

    def _hold(self, keys: Mapping[str, SlotConfig], held: Held) -> None:
        """Hold the policies of `keys`: those given, under the tuned settings they learned
        under, and a fresh one of the configured settings for each other key."""
        policies, tuning = held.get("policies"), held.get("tuning")
        learned_here = held.get("learned_here")
        self.policies = {key: p for key, p in (policies or {}).items() if key in keys}
        self.tuning = {key: t for key, t in (tuning or {}).items() if key in self.policies}
        for key, slot_config in keys.items():
            if key not in self.policies:
                self.policies[key] = build_policy(slot_config)
        self.learned_here = Counter(dict.fromkeys(keys, 0))
        self.learned_here.update({k: n for k, n in (learned_here or {}).items() if k in keys})

    def tuned(self, key: str) -> Tuned:
        return self.tuning.get(key, Tuned())

    def switch(self, key: str, tuned: Tuned, policy: Policy) -> None:
        """From now on `key` learns with `policy`, under the tuned settings `tuned`."""
        old = self.policies[key]
        self.policies[key] = policy
        self.tuning[key] = tuned
        old.close()

    def close(self) -> None:
        for policy in self.policies.values():
            policy.close()


def tuned_slot(name: str, slot: SlotConfig, overrides: Iterable[str]) -> SlotConfig:
    """`slot` with tuned `overrides` laid over it (validated; errors name the key)."""
    overrides = list(overrides)
    if not overrides:
        return slot
    for override in overrides:
        tunable_key(override)  # refuses what tuning may not set
    return override_slot(name, slot, overrides)


def recent_window(slot: str, rewarded: Iterable[RewardedEvent], window: int) -> list[RewardedEvent]:
    """The slot's `window` most recent treatment events, in time order: what the tuner
    replays settings on, and what a switch warm-starts the new settings on."""
    mine = [e for e in rewarded if e.slot == slot and e.group == "treatment"]
    mine.sort(key=lambda e: e.ts)
    return mine[-window:]


def warm_start(slot: SlotConfig, rewarded: Iterable[RewardedEvent]) -> Policy:
    """A fresh policy of `slot`'s settings that has learned `rewarded` once each, in the
    order given, which must be time order (`recent_window`'s, a read window's): what the
    policy learns from, as online, impressed treatment events. An iterator is consumed one
    event at a time, so a window need not be held decoded whole."""
    policy = build_policy(slot)
    try:
        for event in rewarded:
            policy.learn(event)
    except BaseException:
        policy.close()
        raise
    return policy
