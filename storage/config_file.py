"""Reading the config: a TOML file (the path given, else $ARTBANDIT_CONFIG) and `--set`
overrides, validated by `bandit.config` from the mapping read here."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bandit.config import Config, ConfigError, build_config

#: The environment variable naming the config file when no path is given.
ENV_CONFIG = "ARTBANDIT_CONFIG"


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] = os.environ,
) -> Config:
    """Build the validated config from defaults, the file (or $ARTBANDIT_CONFIG) and overrides."""
    source = path if path is not None else environ.get(ENV_CONFIG) or None
    settings = read_toml(Path(source)) if source is not None else None
    return build_config(settings, overrides)


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's tables; a missing or malformed file is a `ConfigError` naming it."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("", f"file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}") from None
