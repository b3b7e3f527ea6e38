"""The streaming learner: joins feedback to decisions from Kafka, learns, checkpoints, publishes.

`core` is the pure part (no sockets, no files), `checkpoint` the durable state on disk,
`publisher` the policy versions it announces, and `loop` the Kafka shell around them.
"""
