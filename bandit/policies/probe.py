"""A policy's smoke test: decide and learn once on a small made-up page.

VW accepts many argument lists that build a learner of the wrong kind (`--cb_explore 4` on
an ADF slot is a single-line learner that fails on the first multi-line example), so the
config check runs a slot's policy through both calls before anything serves or learns.
"""

from __future__ import annotations

from bandit.contracts.events import Candidate, Context, DecisionEvent, PolicyRef, RewardedEvent
from bandit.policies.base import Policy

_CONTEXT = Context(user={"probe_taste": "drama", "probe_score": 0.5}, request={"device": "tv"})
_CANDIDATES = [Candidate(id=f"probe-{i}", features={"tone": f"t{i}", "age": i}) for i in range(4)]


def probe_scoring(policy: Policy) -> None:
    """Score the made-up page without changing the policy (serving's check of a loaded
    version); raises whatever the policy raises when it cannot."""
    policy.action_probabilities(_CONTEXT, _CANDIDATES)


def probe(policy: Policy) -> None:
    """Decide and learn once; raises whatever the policy raises when it cannot."""
    choice = policy.decide(_CONTEXT, _CANDIDATES)
    policy.action_probabilities(_CONTEXT, _CANDIDATES)
    decision = DecisionEvent(
        decision_id="probe", ts=0.0, slot="probe", key="probe", user_hash=None,
        group="treatment", policy=PolicyRef(name=policy.type_name, version="probe"),
        context=_CONTEXT, candidates=_CANDIDATES, chosen=list(choice.chosen),
        probabilities=list(choice.probabilities), explored=choice.explored,
    )  # fmt: skip
    rewards = [1.0] + [0.0] * (len(choice.chosen) - 1)
    policy.learn(RewardedEvent.from_decision(decision, rewards, impressed=True, joined_at=0.0))
