"""The decision service (Flask): request validation, holdout, decision logging, hot reload."""
