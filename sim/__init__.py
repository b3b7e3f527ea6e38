"""Tooling: the simulated home page, its traffic, the end-to-end demo, and the small synthetic
world the tests and benchmarks use. Never imported by serving, learner or replay.
"""
