"""The `artbandit` command: on top of every other package, only wiring (see `cli`)."""
