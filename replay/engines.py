"""Where a partitioned replay computes its partitions' sums: in this process (`local`), on
a local Dask cluster of `workers` processes (`dask`), or on a running Dask scheduler
(`tcp://HOST:PORT`). Whatever the engine, the results come back in path order, so the
merged estimates are identical."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from replay.columnar import ColumnarError

# `mapper(work, paths, args, done)`: `work(path, index, *args)` for every path, in path
# order, calling `done(count)` after each one finishes
Mapper = Callable[
    [Callable[..., Any], Sequence[str], tuple[Any, ...], Callable[[int], None]], list[Any]
]


@contextmanager
def mapper(engine: str, workers: int) -> Iterator[Mapper]:
    if engine == "local":
        yield _local
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - a dependency of the package
        raise ColumnarError("--engine dask needs the `distributed` package") from None
    if engine == "dask":
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None,
        )  # fmt: skip
    elif "://" in engine:
        cluster = None
    else:
        raise ColumnarError(f"--engine {engine}: use local, dask or a scheduler's tcp://HOST:PORT")
    client = Client(cluster if cluster is not None else engine, timeout="30s")
    try:
        yield functools.partial(_distributed, client)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _local(
    work: Callable[..., Any],
    paths: Sequence[str],
    args: tuple[Any, ...],
    done: Callable[[int], None],
) -> list[Any]:
    out = []
    for index, path in enumerate(paths):
        out.append(work(path, index, *args))
        done(index + 1)
    return out


def _distributed(
    client: Any,
    work: Callable[..., Any],
    paths: Sequence[str],
    args: tuple[Any, ...],
    done: Callable[[int], None],
) -> list[Any]:
    from distributed import as_completed

    futures = [
        client.submit(work, path, index, *args, pure=False) for index, path in enumerate(paths)
    ]
    for finished, future in enumerate(as_completed(futures), start=1):
        future.result()  # raises a partition's error here, with its traceback
        done(finished)
    gathered: list[Any] = client.gather(futures)
    return gathered
