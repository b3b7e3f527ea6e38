"""Reading and writing the replay log: rewarded events as JSON Lines, gzip JSON Lines, Parquet,
or straight from the rewarded topic (`kafka://topic`).

The rewarded topic is at least once (a learner restarted after a crash may repeat an event),
so every reader keeps the first event of each decision_id and counts the repeats. A line
that breaks the contract stops the read with its line number, unless `skip_bad` is set, in
which case it is counted and reported: never silently dropped.

Parquet layout (`replay.columnar`): one row per event; the column `event` holds the event's
JSON (nested features do not fit a fixed columnar schema), beside flat columns for query
engines and the columns a round needs (chosen indices, probabilities, rewards, candidate
counts), which a directory of Parquet files, a partitioned log, is replayed from without
decoding events (`replay.partitioned`). Read here, a file's events are decoded from `event`.
"""

from __future__ import annotations

import argparse
import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bandit.config import Config, resolve_bootstrap
from bandit.contracts import events
from bandit.contracts.kafka import KafkaConfig
from kafkaio.preflight import check_connection
from kafkaio.read import TopicMissing, decoded, read_topic, recent_treatment_messages
from replay.progress import Progress

KAFKA_PREFIX = "kafka://"


class LogError(ValueError):
    """The log cannot be read as asked (missing, empty, a line that breaks the contract)."""


@dataclass
class ReplayLog:
    """The rewarded events of a log, one per decision, in time order."""

    events: list[events.RewardedEvent]
    source: str
    duplicates: int = 0  # repeats of a decision_id (at-least-once topic), kept once
    bad: list[str] = field(default_factory=list)  # "line N: why", with skip_bad


def read_log(
    source: str,
    bootstrap_servers: str | None = None,
    skip_bad: bool = False,
    quiet: bool = False,
    kafka: KafkaConfig | None = None,
) -> ReplayLog:
    """Read a replay log from a path (`.jsonl`, `.jsonl.gz`, `.parquet`) or `kafka://topic`
    (with `kafka`'s connection settings: TLS, SASL; default plain)."""
    if source.startswith(KAFKA_PREFIX):
        kafka = kafka or KafkaConfig()
        topic, servers = _topic(source, bootstrap_servers, kafka)
        raw = _topic_values(kafka, servers, topic, quiet)
        total = None
    else:
        path = Path(source)
        if not path.is_file():
            raise LogError(f"{source}: no such file")
        raw, total = _file_values(path)
    log = ReplayLog(events=[], source=source)
    seen: set[str] = set()
    progress = Progress(total or 0, f"reading {source}", quiet=quiet or not total)
    for number, value in enumerate(raw, start=1):
        try:
            event = events.decode(value, events.RewardedEvent)
        except events.EventError as exc:
            if not skip_bad:
                raise LogError(f"{source}: line {number}: {exc}") from None
            log.bad.append(f"line {number}: {exc}")
            continue
        if event.decision_id in seen:
            log.duplicates += 1
            continue
        seen.add(event.decision_id)
        log.events.append(event)
        if number % 4096 == 0:
            progress.update(number)
    progress.close()
    log.events.sort(key=lambda e: e.ts)
    return log


def read_recent_treatment(
    source: str, bootstrap_servers: str | None, kafka: KafkaConfig, slot: str, count: int
) -> list[events.RewardedEvent]:
    """The slot's newest `count` treatment events of a `kafka://topic` log, each decision
    once, oldest first, read backwards from the end: what the tuner judges on, at a cost
    that does not grow with the topic."""
    topic, servers = _topic(source, bootstrap_servers, kafka)
    try:
        return list(decoded(recent_treatment_messages(kafka, servers, topic, slot, count)))
    except TopicMissing:
        raise LogError(f"kafka://{topic}: no such topic") from None


def _topic(source: str, bootstrap_servers: str | None, kafka: KafkaConfig) -> tuple[str, str]:
    """The topic of a `kafka://topic` source and the servers to read it from, once they are
    known and they accept the config's TLS and SASL settings."""
    if not bootstrap_servers:
        raise LogError(f"{source}: reading a topic needs kafka.bootstrap_servers")
    check_connection(kafka, bootstrap_servers, must_answer=True)
    return source.removeprefix(KAFKA_PREFIX), bootstrap_servers


def read_log_argument(args: argparse.Namespace, config: Config) -> ReplayLog:
    """The log a command's `--log` names, read with its `--skip-bad` and `--quiet` over the
    config's Kafka (every command that reads a log reads it so)."""
    return read_log(
        args.log, resolve_bootstrap(config), skip_bad=args.skip_bad, quiet=args.quiet,
        kafka=config.kafka,
    )  # fmt: skip


def write_log(path: str | Path, rewarded: Iterable[events.RewardedEvent]) -> int:
    """Write events in the format the file name says; returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = [events.encode(event) for event in rewarded]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        from replay.columnar import table

        decoded = [events.decode(data, events.RewardedEvent) for data in encoded]
        pq.write_table(table(encoded, decoded), path, compression="zstd")
    else:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "wb") as fh:
            for data in encoded:
                fh.write(data + b"\n")
    return len(encoded)


def _file_values(path: Path) -> tuple[Iterator[bytes], int | None]:
    """The event JSON of each line or row, and how many there are when that is cheap."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path, columns=["event"])
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise LogError(f"{path}: not a replay Parquet file: {exc}") from None
        values = table.column("event").to_pylist()
        return (v.encode() if isinstance(v, str) else v for v in values), len(values)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        try:
            data = fh.read()
        except (OSError, EOFError) as exc:
            raise LogError(f"{path}: cannot read: {exc}") from None
    lines = [line for line in data.splitlines() if line.strip()]
    return iter(lines), len(lines)


def _topic_values(
    kafka: KafkaConfig, bootstrap_servers: str, topic: str, quiet: bool
) -> Iterator[bytes]:
    """Every message of `topic`, with a progress line once the partitions' ends are known."""
    progress: Progress | None = None

    def show(read: int, total: int) -> None:
        nonlocal progress
        if progress is None:
            progress = Progress(total, f"reading kafka://{topic}", quiet=quiet)
        progress.update(read)

    try:
        yield from read_topic(kafka, bootstrap_servers, topic, progress=show)
    except TopicMissing:
        raise LogError(f"kafka://{topic}: no such topic") from None
    if progress is not None:
        progress.close()
