"""The Parquet replay log: one row per rewarded event, columnar where a round needs it.

A round (a logged choice) needs the event's slot, group, chosen candidates, their logged
probabilities and rewards, how many candidates it had and which are marked default; the
check against the holdout needs the event's terms for the default policy
(`calibration.default_terms`). Those are columns, read into numpy arrays without decoding
any event's JSON. The event itself, as the JSON Schema contract defines it, stays in the
`event` column: it is what the columns are derived from when the file is written (`table`),
and it is decoded (and checked) only when something needs the features (a target that
scores them, a reward model), by `LazyEvents`. A directory of such files is a partitioned
log (`write_partitions`), which `replay.partitioned` estimates one partition at a time, on
one machine or a cluster.

Files written before all of these columns existed are read by decoding `event`, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bandit.contracts import events
from replay import holdout
from replay.rounds import Ragged, Rounds

ROUND_COLUMNS = (
    "chosen_index", "probabilities", "rewards", "candidates", "defaults", "floored",
    "default_terms",
)  # fmt: skip
PART_NAME = "part-{:05d}.parquet"


class ColumnarError(ValueError):
    """A Parquet log that cannot be read as a replay log (its message says which file)."""


def table(encoded: Sequence[bytes], decoded: Sequence[events.RewardedEvent]) -> pa.Table:
    """The Parquet rows of events already checked against the contract (`decoded`) and
    their JSON (`encoded`): the flat columns for query engines, the round columns, `event`."""
    return pa.table({
        "decision_id": [e.decision_id for e in decoded],
        "ts": [e.ts for e in decoded],
        "slot": [e.slot for e in decoded],
        "group": [e.group for e in decoded],
        "reward": [e.reward for e in decoded],
        "chosen_index": pa.array([e.chosen_indices() for e in decoded], pa.list_(pa.int32())),
        "probabilities": pa.array([e.probabilities for e in decoded], pa.list_(pa.float64())),
        "rewards": pa.array([e.rewards for e in decoded], pa.list_(pa.float64())),
        "candidates": pa.array([len(e.candidates) for e in decoded], pa.int32()),
        "defaults": pa.array(
            [[i for i, c in enumerate(e.candidates) if c.default] for e in decoded],
            pa.list_(pa.int32()),
        ),
        "floored": [any(c.floor for c in e.candidates) for e in decoded],
        "default_terms": pa.FixedSizeListArray.from_arrays(
            pa.array(holdout.terms(decoded).ravel()), len(holdout.TERMS)
        ),
        "event": [data.decode() for data in encoded],
    })  # fmt: skip


def write_partitions(
    rewarded: Iterable[events.RewardedEvent], directory: str | Path, rows_per_file: int
) -> list[Path]:
    """Write events as a partitioned log: `rows_per_file` events per file, in the order
    given (read_log's: time order, each decision once)."""
    if rows_per_file < 1:
        raise ValueError("rows_per_file must be 1 or more")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("part-*.parquet"):
        stale.unlink()
    paths: list[Path] = []
    batch: list[events.RewardedEvent] = []

    def flush() -> None:
        path = directory / PART_NAME.format(len(paths))
        pq.write_table(table([events.encode(e) for e in batch], batch), path, compression="zstd")
        paths.append(path)
        batch.clear()

    for event in rewarded:
        batch.append(event)
        if len(batch) == rows_per_file:
            flush()
    if batch or not paths:
        flush()
    return paths


def partition_paths(directory: str | Path) -> list[Path]:
    """A partitioned log's files, in name order (the order their estimates merge in)."""
    paths = sorted(Path(directory).rglob("*.parquet"))
    if not paths:
        raise ColumnarError(f"{directory}: no .parquet files")
    return paths


class LazyEvents(Sequence[events.RewardedEvent]):
    """Some events of a partition, read from its `event` column, decoded and checked against
    the contract the first time any is asked for, all at once."""

    def __init__(self, load: Callable[[], list[str]], count: int, source: str) -> None:
        self._load = load
        self._count = count
        self._source = source
        self._decoded: list[events.RewardedEvent] | None = None

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> events.RewardedEvent: ...
    @overload
    def __getitem__(self, index: slice) -> list[events.RewardedEvent]: ...
    def __getitem__(self, index: int | slice) -> events.RewardedEvent | list[events.RewardedEvent]:
        return self.decoded()[index]

    def __iter__(self) -> Iterator[events.RewardedEvent]:
        return iter(self.decoded())

    @property
    def is_decoded(self) -> bool:
        return self._decoded is not None

    def decoded(self) -> list[events.RewardedEvent]:
        if self._decoded is None:
            out = []
            for number, data in enumerate(self._load(), start=1):
                try:
                    out.append(events.decode(data, events.RewardedEvent))
                except events.EventError as exc:
                    raise ColumnarError(f"{self._source}: event {number}: {exc}") from None
            self._decoded = out
        return self._decoded


@dataclass
class Partition:
    """One Parquet file of a log, its rows once each (the first of a repeated decision),
    without the `event` column, which `event_column` reads when an event is asked for."""

    source: str
    table: pa.Table
    duplicates: int
    event_column: Callable[[], pa.ChunkedArray]

    @property
    def slots(self) -> list[str]:
        return sorted(pc.unique(self.table.column("slot")).to_pylist())

    def _mask(self, slot: str, group: str) -> pa.ChunkedArray:
        return pc.and_(
            pc.equal(self.table.column("slot"), slot), pc.equal(self.table.column("group"), group)
        )

    def default_terms(self, slot: str, group: str) -> np.ndarray:
        """(events, 6): each event's terms for the default policy (`holdout.terms`)."""
        terms = self.table.filter(self._mask(slot, group)).column("default_terms")
        return _flat(terms, float).reshape(-1, len(holdout.TERMS))

    def rounds(self, slot: str, group: str) -> Rounds:
        """The rounds of `slot`'s events of `group`, from the columns (events read and
        decoded only when asked for)."""
        mask = self._mask(slot, group)
        part = self.table.filter(mask)
        rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        chosen = part.column("chosen_index").combine_chunks()
        lengths = pc.list_value_length(chosen).to_numpy(zero_copy_only=False).astype(np.int64)
        event_index = np.repeat(np.arange(len(part), dtype=np.int64), lengths)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
        sizes = part.column("candidates").to_numpy().astype(np.int64)
        return Rounds(
            slot=slot,
            events=LazyEvents(
                lambda: self.event_column().take(rows).to_pylist(), len(part), self.source
            ),
            event_index=event_index,
            position=np.arange(int(lengths.sum()), dtype=np.int64) - starts[event_index],
            chosen=_flat(chosen, np.int64),
            propensity=_flat(part.column("probabilities"), float),
            reward=_flat(part.column("rewards"), float),
            width=int(sizes.max(initial=0)),
            sizes=sizes,
            defaults=_ragged(part.column("defaults")),
            floored=part.column("floored").to_numpy(zero_copy_only=False).astype(bool),
        )


def read_partition(path: str | Path) -> Partition:
    """A Parquet log file's round columns, checked (a file without them is decoded from
    `event` and checked against the contract instead)."""
    source = str(path)
    try:
        names = pq.read_schema(path).names
        if "event" not in names:
            raise ValueError("no `event` column")
        if set(ROUND_COLUMNS) <= set(names):
            found = pq.read_table(path, columns=[n for n in names if n != "event"])

            def event_column() -> pa.ChunkedArray:
                return pq.read_table(path, columns=["event"]).column("event")
        else:
            encoded = pq.read_table(path, columns=["event"]).column("event").to_pylist()
            decoded = LazyEvents(lambda: encoded, len(encoded), source).decoded()
            whole = table([events.encode(e) for e in decoded], decoded)
            found = whole.drop_columns(["event"])

            def event_column() -> pa.ChunkedArray:
                return whole.column("event")
    except ColumnarError:
        raise
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise ColumnarError(f"{source}: not a replay Parquet file: {exc}") from None
    _check(found, source)
    ids = found.column("decision_id").to_numpy(zero_copy_only=False)
    _, first = np.unique(ids, return_index=True)
    keep = np.zeros(len(ids), dtype=bool)
    keep[first] = True
    if len(first) == len(ids):
        return Partition(source, found, 0, event_column)
    kept = pa.array(keep)
    return Partition(
        source, found.filter(kept), int(len(ids) - len(first)),
        lambda: event_column().filter(kept),
    )  # fmt: skip


def _check(found: pa.Table, source: str) -> None:
    """The contract's rules on the round columns, over whole columns at once."""
    chosen = found.column("chosen_index").combine_chunks()
    lengths = pc.list_value_length(chosen).to_numpy(zero_copy_only=False)
    for name in ("probabilities", "rewards"):
        other = pc.list_value_length(found.column(name).combine_chunks())
        if not np.array_equal(other.to_numpy(zero_copy_only=False), lengths):
            raise ColumnarError(f"{source}: {name}: not one entry per chosen candidate")
    if np.any(lengths < 1):
        raise ColumnarError(f"{source}: chosen_index: an event chose nothing")
    sizes = np.repeat(found.column("candidates").to_numpy(), lengths)
    index = _flat(chosen, np.int64)
    if np.any(index < 0) or np.any(index >= sizes):
        raise ColumnarError(f"{source}: chosen_index: outside the event's candidates")
    probability = _flat(found.column("probabilities"), float)
    if np.any(~(probability > 0)) or np.any(probability > 1):
        raise ColumnarError(f"{source}: probabilities: every entry must be in (0, 1]")
    if not np.all(np.isfinite(_flat(found.column("rewards"), float))):
        raise ColumnarError(f"{source}: rewards: every entry must be finite")
    terms = found.column("default_terms").combine_chunks()
    width = len(holdout.TERMS)
    if np.any(pc.list_value_length(terms).to_numpy(zero_copy_only=False) != width):
        raise ColumnarError(f"{source}: default_terms: not {width} entries per event")
    if not np.all(np.isfinite(_flat(terms, float))):
        raise ColumnarError(f"{source}: default_terms: every entry must be finite")
    groups = set(pc.unique(found.column("group")).to_pylist())
    if not groups <= {"treatment", "control"}:
        raise ColumnarError(f"{source}: group: {sorted(groups - {'treatment', 'control'})}")


def _ragged(column: pa.ChunkedArray) -> Ragged:
    lists = column.combine_chunks()
    offsets = lists.offsets.to_numpy().astype(np.int64)
    return Ragged(offsets - offsets[0], _flat(lists, np.int64))


def _flat(column: pa.ChunkedArray | pa.Array, dtype: type) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    result: np.ndarray = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(dtype)
    return result
