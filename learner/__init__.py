"""The streaming learner's shell: joins feedback to decisions from Kafka, learns, checkpoints
and publishes, around the pure `bandit.learning.learner_core`.

`loop` is the Kafka consumer loop (rebalances), `writer` its output, `checkpoint_store` the
checkpoint files, `publisher` the policy versions it announces, `metrics` its /metrics.
"""
