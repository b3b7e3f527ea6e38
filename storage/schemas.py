"""Writing the event contracts' JSON Schemas (configs/schemas), which other teams' consumers
validate against: `python -m storage.schemas [directory]` after a contract changes."""

from __future__ import annotations

import json
import pathlib
import sys

from bandit.contracts.events import (
    DeadLetterEvent,
    DecisionEvent,
    FeedbackEvent,
    RewardedEvent,
    json_schema,
    schema_file_name,
)


def write_schemas(directory: str) -> list[str]:
    """Write one JSON Schema file per event type into `directory`; returns the paths."""
    target = pathlib.Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for type_ in (DecisionEvent, FeedbackEvent, RewardedEvent, DeadLetterEvent):
        path = target / schema_file_name(type_)
        path.write_text(json.dumps(json_schema(type_), indent=2, sort_keys=True) + "\n")
        paths.append(str(path))
    return paths


if __name__ == "__main__":
    print("\n".join(write_schemas(sys.argv[1] if len(sys.argv) > 1 else "configs/schemas")))
