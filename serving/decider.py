"""Deciding a page: holdout group, one policy decision per slot, and the decision events."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from bandit.config import SHADOW, Config, shadow_key
from bandit.contracts.events import (
    Candidate,
    Context,
    DecisionEvent,
    Group,
    PolicyRef,
    ShadowScore,
)
from bandit.contracts.slots import Exposure
from bandit.policies import Choice, DefaultPolicy
from bandit.policies.base import default_order
from serving.api import DecideRequest, Decision, RequestError, SlotRequest
from serving.exposure_shares import ExposureShares
from serving.holdout import Holdout
from serving.policy_registry import PolicyRegistry

CONTROL_POLICY = PolicyRef(name="default", version="editorial")


@dataclass(frozen=True)
class PageDecision:
    decisions: list[Decision]
    events: list[DecisionEvent]


class PageDecider:
    def __init__(
        self,
        config: Config,
        registry: PolicyRegistry,
        holdout: Holdout,
        on_unconsented: Callable[[str, str], None] = lambda slot, served: None,
    ):
        self.config = config
        self.registry = registry
        self.holdout = holdout
        self.control = {name: DefaultPolicy(slot) for name, slot in config.slots.items()}
        self.shares = ExposureShares()
        self.on_unconsented = on_unconsented  # (slot, "default" | "context"): a metric

    def reconfigured(self, config: Config) -> PageDecider:
        """This decider for `config`: the same exposure shares and metric hook, and the same
        holdout unless the config rotated a salt (docs/operations.md, Privacy)."""
        holdout = self.holdout
        if not holdout.salted_with(config.serving.holdout_salt, config.serving.user_hash_salt):
            holdout = Holdout(config.serving.holdout_salt, config.serving.user_hash_salt)
        decider = PageDecider(config, self.registry, holdout, self.on_unconsented)
        decider.shares = self.shares
        return decider

    def decide(self, request: DecideRequest) -> PageDecision:
        consented = request.consent.personalization
        # without consent the person is an anonymous visitor: no id, no features, no hash
        user = request.user if consented else None
        user_id = user.id if user else None
        bucket = self.holdout.bucket(user_id)
        user_hash = self.holdout.user_hash(user_id)
        context = Context(user=user.features if user else {}, request=request.context)
        now = time.time()
        decisions, events = [], []
        for index, slot in enumerate(request.slots):
            slot_config = self.config.slots[slot.slot]
            if not consented:
                self.on_unconsented(slot.slot, slot_config.unconsented)
                if slot_config.unconsented == "default":
                    decisions.append(self._unlogged_default(slot, context))
                    continue
            fraction = slot_config.holdout_fraction
            group = self.holdout.group(bucket, fraction)
            if group == "control":
                policy_ref, choice = CONTROL_POLICY, self._control(slot, context)
                candidates: Sequence[Candidate] = slot.candidates
                shadow = None
            else:
                policy_ref, choice, candidates, shadow = self._treated(
                    index, slot, slot_config.exposure, context, user_id, now
                )
            decision_id = os.urandom(16).hex()  # 128 random bits, as uuid4, at a third the cost
            decisions.append(_answer(decision_id, slot, choice, group, policy_ref.version))
            events.append(choice.event(
                decision_id, now, slot.slot, slot.key, context, candidates, policy_ref,
                group=group, user_hash=user_hash, holdout_fraction=fraction, shadow=shadow,
            ))  # fmt: skip
        return PageDecision(decisions, events)

    def _control(self, slot: SlotRequest, context: Context) -> Choice:
        """The editorial default, logged with what the treatment would give it."""
        choice = self.control[slot.slot].decide(context, slot.candidates, slot.select)
        if choice.default_probability is not None:  # a single-choice slot
            treated = self._default_probability(slot, context)
            choice = dataclasses.replace(choice, default_probability=treated)
        return choice

    def _treated(
        self,
        index: int,
        slot: SlotRequest,
        exposure: Exposure,
        context: Context,
        user_id: str | None,
        now: float,
    ) -> tuple[PolicyRef, Choice, Sequence[Candidate], ShadowScore | None]:
        """The treatment's choice, over the candidates as the exposure floor flags them, and
        the shadow's score of it."""
        candidates = self.shares.flag(slot.slot, exposure, slot.candidates)
        draw = None
        if exposure.consistent_period_s is not None and user_id is not None:
            draw = self.holdout.draw(
                user_id, slot.slot, slot.key, now, exposure.consistent_period_s
            )
        policy_ref, choice = self._treatment(index, slot, candidates, context, draw)
        self.shares.record(slot.slot, exposure, candidates, choice.chosen[0])
        shadow = None
        if not policy_ref.version.startswith(f"{SHADOW}:"):  # not promoted
            shadow = self._shadow(slot, candidates, context, choice)
        return policy_ref, choice, candidates, shadow

    def _shadow(
        self, slot: SlotRequest, candidates: Sequence[Candidate], context: Context, choice: Choice
    ) -> ShadowScore | None:
        """The slot's shadow policy's pmfs at the live choice's positions (None without one)."""
        entry = self.registry.get(shadow_key(slot.slot))
        if entry is None:
            return None
        index = {c.id: i for i, c in enumerate(candidates)}
        placed = [index[chosen] for chosen in choice.chosen]
        with entry.lock:
            if entry.closed:
                return None
            pmfs = entry.policy.pmfs_along(context, candidates, placed)
        return ShadowScore(policy=PolicyRef(name=entry.policy.type_name, version=entry.version),
                           probabilities=[pmf.tolist() for pmf in pmfs])  # fmt: skip

    def _unlogged_default(self, slot: SlotRequest, context: Context) -> Decision:
        choice = self.control[slot.slot].decide(context, slot.candidates, slot.select)
        return _answer(None, slot, choice, "unpersonalized", CONTROL_POLICY.version)

    def _default_probability(self, slot: SlotRequest, context: Context) -> float | None:
        """What the slot's treatment policy would give the editorial default here: logged
        with control decisions too, so that off-policy estimates can be checked against
        control where the policy supports the default (see bandit.measurement.calibration)."""
        entry = self.registry.get(slot.slot)
        if entry is None:
            return None
        with entry.lock:
            if entry.closed:
                return None
            pmf = entry.policy.action_probabilities(context, slot.candidates)
        return min(1.0, float(pmf[default_order(slot.candidates)[0]]))

    def _treatment(
        self,
        index: int,
        slot: SlotRequest,
        candidates: Sequence[Candidate],
        context: Context,
        draw: float | None,
    ) -> tuple[PolicyRef, Choice]:
        for _ in range(3):  # an entry closed by a hot swap is retried with its successor
            entry = self.registry.get(slot.slot)
            if entry is None:
                raise RequestError(
                    f"slots[{index}].slot",
                    f"slot {slot.slot!r} has no policy yet",
                    status=503,
                    reason="not_ready",
                )
            with entry.lock:
                if entry.closed:
                    continue
                choice = entry.policy.decide(context, candidates, slot.select, draw=draw)
                return PolicyRef(name=entry.policy.type_name, version=entry.version), choice
        raise AssertionError(f"slot {slot.slot}: policy swapped three times during one request")


def _answer(
    decision_id: str | None,
    slot: SlotRequest,
    choice: Choice,
    group: Group | Literal["unpersonalized"],
    version: str,
) -> Decision:
    return Decision(
        decision_id=decision_id,
        slot=slot.slot,
        key=slot.key,
        chosen=list(choice.chosen),
        probabilities=list(choice.probabilities),
        group=group,
        policy_version=version,
        explored=choice.explored,
    )
