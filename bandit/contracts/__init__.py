"""The contracts: the events serving, the learner and replay exchange over Kafka (a
decision, its feedback, the rewarded event they join into), with their JSON schemas, and
the settings of one slot of the page (kind, policy, exploration, reward, exposure)."""
