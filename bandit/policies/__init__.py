"""Deciding over a candidate set: policies for every slot kind behind one interface
(`build_policy` picks one from a slot's settings), the VW text encoding they learn and
predict with, the exposure floors and consistent draws serving applies to their pmfs, and
the change detector that raises a policy's exploration when the world moves."""

from bandit.contracts.slots import SlotConfig
from bandit.policies.base import Choice, Policy
from bandit.policies.baselines import DefaultPolicy, ThompsonPolicy, UniformPolicy
from bandit.policies.vw import VWChoicePolicy, VWError, VWRowsPolicy

__all__ = [
    "Choice",
    "DefaultPolicy",
    "Policy",
    "ThompsonPolicy",
    "UniformPolicy",
    "VWChoicePolicy",
    "VWError",
    "VWRowsPolicy",
    "build_policy",
    "policy_class",
]


def policy_class(slot: SlotConfig) -> type[Policy]:
    """The class that implements `slot.policy` for `slot.kind`."""
    if slot.policy == "vw":
        return VWRowsPolicy if slot.kind.ranked else VWChoicePolicy
    return {"uniform": UniformPolicy, "default": DefaultPolicy, "thompson": ThompsonPolicy}[
        slot.policy
    ]


def build_policy(slot: SlotConfig) -> Policy:
    """A fresh, untrained policy for a slot."""
    return policy_class(slot)(slot)
