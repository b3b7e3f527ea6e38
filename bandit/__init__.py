"""artbandit's pure core: configuration, event contracts, feature encoding, policies, model store.

Nothing in this package opens a socket; serving/ (HTTP) and the learner loop (Kafka) feed it.
"""

__version__ = "0.1.0"
