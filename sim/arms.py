"""Pages decided in process by the project's policies, learned from the same feedback and
reward mapping the streaming learner uses: the quality benchmark's arms, without HTTP.

Feedback reaches the policies `delay_pages` pages late, as it does through the attribution
window and the publish interval of the real pipeline.
"""

from __future__ import annotations

import zlib
from collections import defaultdict

import msgspec
import numpy as np

from bandit.config import Config
from bandit.contracts.events import (
    Candidate,
    DecisionEvent,
    FeedbackEvent,
    PolicyRef,
    RewardedEvent,
)
from bandit.contracts.slots import PolicyType
from bandit.learning.join import rewards_of
from bandit.policies import build_policy
from bandit.policies.exposure import consistent_draw
from serving.exposure_shares import ExposureShares
from sim.page import (
    ARTWORK,
    HERO,
    ROWS,
    Page,
    PageChoice,
    artwork_index,
    hero_candidates,
    row_candidates,
)
from sim.world import World

PUBLISH_PAGES = 600  # pages between published versions: 30 s of pages 0.05 s apart


class PolicyArm:
    """One policy per slot (`policy` overrides the configured type of every slot).

    With `members` > 1, the learner's ways to scale out (docs/operations.md): decisions are
    partitioned by a hash of their id over `members`; `split`, each member learns its own
    partitions into its own models and serving follows the newest published version (the
    members' in turn, every PUBLISH_PAGES pages); otherwise one model per slot learns every
    member's events as a rewarded learner reads them, a partition's at a time.
    """

    def __init__(
        self,
        world: World,
        config: Config,
        policy: PolicyType | None = None,
        seed: int = 0,
        delay_pages: int = 200,
        members: int = 1,
        split: bool = False,
    ):
        self.world = world
        self.slots = {
            name: msgspec.structs.replace(
                slot, seed=seed + i, policy=policy or slot.policy, holdout_fraction=0.0
            )
            for i, (name, slot) in enumerate(config.slots.items())
        }
        for name in (HERO, ROWS, ARTWORK):
            if name not in self.slots:
                raise ValueError(f"the config has no {name!r} slot")
        self.members = members
        self.models = [
            {name: build_policy(msgspec.structs.replace(slot, seed=(slot.seed or 0) + 1000 * m))
             for name, slot in self.slots.items()}
            for m in range(members if split else 1)
        ]  # fmt: skip
        self.policies = self.models[0]  # what serving follows now
        self._pages = 0
        self.shares = ExposureShares()  # as serving keeps them, for `exposure.below_share`
        self.delay_pages = delay_pages
        self._pending: list[tuple[list[DecisionEvent], list[FeedbackEvent]]] = []
        self._count = 0

    def decide(self, page: Page, ts: float) -> tuple[PageChoice, list[DecisionEvent]]:
        """The page's choices and the decision events serving would log for it."""
        world, context = self.world, page.context
        decisions: list[DecisionEvent] = []
        self.policies = self.models[(self._pages // PUBLISH_PAGES) % len(self.models)]
        self._pages += 1

        def decide(
            slot: str, key: str, offered: list[Candidate], select: int | None
        ) -> tuple[str, ...]:
            exposure = self.slots[slot].exposure
            candidates = self.shares.flag(slot, exposure, offered)
            draw = None
            if exposure.consistent_period_s is not None:
                period = exposure.consistent_period_s
                draw = consistent_draw(b"sim", page.person.id, slot, key, ts, period)
            choice = self.policies[slot].decide(context, candidates, select, draw=draw)
            self.shares.record(slot, exposure, candidates, choice.chosen[0])
            self._count += 1
            policy = PolicyRef(name=slot, version="sim")
            decisions.append(choice.event(f"d{self._count}", ts, slot, key, context, candidates,
                                          policy))  # fmt: skip
            return choice.chosen

        hero = decide(HERO, "hero", hero_candidates(world, page), None)[0]
        rows = decide(ROWS, "home", row_candidates(world, page), page.select)
        fold = world.params.devices[page.device]
        artwork = {}
        for row_id in rows[: fold.fold_rows]:  # only what can show needs an artwork
            for t in page.row_titles[row_id][: fold.fold_tiles]:
                title = world.titles[t]
                chosen = decide(ARTWORK, f"title:{title.id}", world.artwork_candidates(title), None)
                artwork[title.id] = artwork_index(chosen[0])
        return PageChoice(hero, tuple(rows), artwork), decisions

    def feedback(self, decisions: list[DecisionEvent], feedback: list[FeedbackEvent]) -> None:
        """Queue a page's feedback; pages `delay_pages` old are learned."""
        self._pending.append((decisions, feedback))
        if len(self._pending) >= self.delay_pages:
            self.flush()

    def flush(self) -> None:
        rewarded: list[RewardedEvent] = []
        for decisions, feedback in self._pending:
            by_decision: dict[str, list[FeedbackEvent]] = defaultdict(list)
            for event in feedback:
                by_decision[event.decision_id].append(event)
            for decision in decisions:
                seen = by_decision.get(decision.decision_id)
                if not seen:
                    continue  # never impressed: not a training example
                slot = self.slots[decision.slot]
                rewards = rewards_of(slot, len(decision.chosen), seen)
                rewarded.append(RewardedEvent.from_decision(decision, rewards, True, decision.ts))
        member = [zlib.crc32(e.decision_id.encode()) % self.members for e in rewarded]
        for index in sorted(range(len(rewarded)), key=member.__getitem__):  # stable
            learned = rewarded[index]
            self.models[member[index] % len(self.models)][learned.slot].learn(learned)
        self._pending.clear()

    def close(self) -> None:
        for models in self.models:
            for policy in models.values():
                policy.close()


def decision_ids(decisions: list[DecisionEvent]) -> dict[tuple[str, str], str]:
    return {(d.slot, d.key): d.decision_id for d in decisions}


def seeded(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])
