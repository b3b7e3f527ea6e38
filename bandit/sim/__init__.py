"""The simulated home page: a seeded world, its traffic, and the end-to-end demo."""
