"""The `artbandit` command: on top of every other package, only wiring (see `cli`)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("artbandit")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0+unknown"
