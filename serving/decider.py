"""Deciding a page: holdout group, one policy decision per slot, and the decision events."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

from bandit.config import Config
from bandit.events import Context, DecisionEvent, PolicyRef
from bandit.policies import Choice, DefaultPolicy
from bandit.policies.base import default_order
from serving.api import DecideRequest, Decision, RequestError, SlotRequest
from serving.holdout import Holdout
from serving.policy_registry import PolicyRegistry

CONTROL_POLICY = PolicyRef(name="default", version="editorial")


@dataclass(frozen=True)
class PageDecision:
    decisions: list[Decision]
    events: list[DecisionEvent]


class PageDecider:
    def __init__(self, config: Config, registry: PolicyRegistry, holdout: Holdout):
        self.config = config
        self.registry = registry
        self.holdout = holdout
        self.control = {name: DefaultPolicy(slot) for name, slot in config.slots.items()}

    def decide(self, request: DecideRequest) -> PageDecision:
        user_id = request.user.id if request.user else None
        bucket = self.holdout.bucket(user_id)
        user_hash = self.holdout.user_hash(user_id)
        context = Context(
            user=request.user.features if request.user else {}, request=request.context
        )
        now = time.time()
        decisions, events = [], []
        for index, slot in enumerate(request.slots):
            fraction = self.config.slots[slot.slot].holdout_fraction
            group = self.holdout.group(bucket, fraction)
            if group == "control":
                policy_ref = CONTROL_POLICY
                choice = self.control[slot.slot].decide(context, slot.candidates, slot.select)
                if choice.default_probability is not None:  # a single-choice slot
                    treated = self._default_probability(slot, context)
                    choice = dataclasses.replace(choice, default_probability=treated)
            else:
                policy_ref, choice = self._treatment(index, slot, context)
            decision_id = os.urandom(16).hex()  # 128 random bits, as uuid4, at a third the cost
            chosen, probabilities = list(choice.chosen), list(choice.probabilities)
            decisions.append(
                Decision(
                    decision_id=decision_id,
                    slot=slot.slot,
                    key=slot.key,
                    chosen=chosen,
                    probabilities=probabilities,
                    group=group,
                    policy_version=policy_ref.version,
                    explored=choice.explored,
                )
            )
            events.append(
                choice.event(
                    decision_id,
                    now,
                    slot.slot,
                    slot.key,
                    context,
                    slot.candidates,
                    policy_ref,
                    group=group,
                    user_hash=user_hash,
                    holdout_fraction=fraction,
                )
            )
        return PageDecision(decisions, events)

    def _default_probability(self, slot: SlotRequest, context: Context) -> float | None:
        """What the slot's treatment policy would give the editorial default here: logged
        with control decisions too, so that off-policy estimates can be checked against
        control where the policy supports the default (see bandit.calibration)."""
        entry = self.registry.get(slot.slot)
        if entry is None:
            return None
        with entry.lock:
            if entry.closed:
                return None
            pmf = entry.policy.action_probabilities(context, slot.candidates)
        return min(1.0, float(pmf[default_order(slot.candidates)[0]]))

    def _treatment(
        self, index: int, slot: SlotRequest, context: Context
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
                choice = entry.policy.decide(context, slot.candidates, slot.select)
                return PolicyRef(name=entry.policy.type_name, version=entry.version), choice
        raise AssertionError(f"slot {slot.slot}: policy swapped three times during one request")
