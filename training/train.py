"""Warm start: train a slot's policy on a rewarded log and publish it as a version.

A new slot, or a slot whose learning settings changed, would otherwise start from nothing.
`artbandit train` learns every treatment event of the slot in the log, in time order, with
the slot's configured policy (the logged propensities make it off-policy learning, as
online), stores the result as the slot's next version and announces it on the models
topic. Serving replicas load it like any published version; a learner without a
checkpointed model for the slot (a new slot or config) starts from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bandit.config import Config
from bandit.contracts.events import RewardedEvent
from bandit.policies import build_policy
from kafkaio import clients
from replay.progress import Progress
from storage.model_store import ModelStore, VersionInfo


class TrainError(ValueError):
    """Nothing to train: the slot is not configured, or the log has none of its events."""


@dataclass(frozen=True)
class Trained:
    version: VersionInfo
    events: int  # the slot's events in the log
    learned: int  # of them, the ones the policy learns from (impressed treatment ones)


def train(config: Config, slot: str, log: list[RewardedEvent], quiet: bool = False) -> Trained:
    """Learn `slot`'s policy on its events of `log` and store it as the next version."""
    slot_config = config.slots.get(slot)
    if slot_config is None:
        raise TrainError(f"slot {slot!r} is not in the config (slots: {', '.join(config.slots)})")
    mine = sorted((e for e in log if e.slot == slot), key=lambda e: e.ts)
    if not mine:
        raise TrainError(f"the log has no events of slot {slot!r}")
    policy = build_policy(slot_config)
    progress = Progress(len(mine), f"training {slot}", quiet=quiet)
    try:
        for done, event in enumerate(mine, 1):
            policy.learn(event)
            if done % 1000 == 0:
                progress.update(done)
        progress.close()
        if policy.examples_learned == 0:
            raise TrainError(
                f"none of the {len(mine)} events of slot {slot!r} is learnable "
                "(impressed and in treatment, or control with learn_control)"
            )
        store = ModelStore(config.model_store.path, config.model_store.keep_versions)
        info = store.save(slot, policy)
    finally:
        policy.close()
    return Trained(info, len(mine), info.examples_learned)


def announce(config: Config, bootstrap_servers: str, version: VersionInfo) -> None:
    """Put the stored version on the models topic, as a learner publishes one, so replicas
    that do not share the store's disk install it too."""
    store = ModelStore(config.model_store.path, config.model_store.keep_versions)
    producer = clients.producer(config.kafka, "tool_producer", bootstrap_servers)
    try:
        producer.send(
            config.kafka.topics.models,
            key=version.slot.encode(),
            value=store.version_file(version.slot, version.version),
        ).get(timeout=60)
    finally:
        producer.close(timeout=10)
