"""artbandit's pure core: config, event contracts, slots, VW encoding, policies, the reward
join, the learner's state machine and checkpoint types, the model store, stats.

No module here imports Kafka, Flask, gunicorn, sockets, subprocesses or HTTP (a test keeps
it so); serving/, learner/ and replay/ are the shells that feed it.
"""

__version__ = "0.1.0"
