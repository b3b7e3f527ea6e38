"""The learner's topics: created when missing, and checked to be co-partitioned."""

from __future__ import annotations

import logging

from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from bandit.config import Config
from kafkaio import clients

log = logging.getLogger(__name__)


class TopicError(RuntimeError):
    """The topics cannot carry the join (e.g. decisions and feedback partitioned differently)."""


def ensure_topics(config: Config, bootstrap_servers: str) -> int:
    """Create missing topics (models compacted); return the partitions of the joined topics."""
    topics = config.kafka.topics
    partitions = config.learner.partitions
    admin = clients.admin(config.kafka, bootstrap_servers)
    try:
        wanted = [
            NewTopic(topics.decisions, partitions, 1),
            NewTopic(topics.feedback, partitions, 1),
            NewTopic(topics.rewarded, partitions, 1),
            NewTopic(topics.deadletter, 1, 1),
            NewTopic(topics.models, 1, 1, topic_configs={"cleanup.policy": "compact"}),
        ]
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            try:
                admin.create_topics(missing)
                log.info("created topics %s", ", ".join(t.name for t in missing))
            except TopicAlreadyExistsError:
                pass  # another member created them first
        described = {
            t["name"]: len(t["partitions"])
            for t in admin.describe_topics([topics.decisions, topics.feedback])
        }
    finally:
        admin.close()
    if described[topics.decisions] != described[topics.feedback]:
        raise TopicError(
            f"{topics.decisions} has {described[topics.decisions]} partitions and "
            f"{topics.feedback} has {described[topics.feedback]}: a decision and its feedback "
            "must land in the same partition number, so both need the same count"
        )
    return described[topics.decisions]
