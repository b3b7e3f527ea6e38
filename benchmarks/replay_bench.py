"""Offline replay speed: estimators over a million logged decisions, log loading, scoring a
saved VW policy over a log and replaying a VW learning configuration.

  estimators   IPS, SNIPS and DR with normal intervals on 1,000,000 rounds with 10
               candidates, given the target's probabilities and the reward model's
               predictions as arrays (file load excluded); plus a 200-replicate bootstrap
  load         read_log of a JSONL and a Parquet log (decode + validate + dedupe), events/s
  score        a saved VW policy's probabilities over every logged event, events/s
  learn        learning-policy replay (score each event, then learn it), events/s
  distributed  10,000,000 rounds in 10 Parquet partitions replayed (uniform and default,
               IPS, clipped IPS and SNIPS, 100 bootstrap replicates) in this process and on
               a local Dask cluster of 2 workers: the estimates must be identical; with the
               round columns' load throughput per core

Targets: estimators < 2 s, score >= 20,000 events/s, learn >= 10,000 events/s.
Run: python benchmarks/replay_bench.py [--rounds N] [--events N] [--distributed-rounds N]
(or: make bench)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bandit.contracts import events
from bandit.contracts.slots import SlotConfig, SlotKind
from bandit.policies import build_policy
from replay import estimators as est
from replay.logs import read_log, write_log
from replay.partitioned import load_rate, replay_partitioned
from replay.results import Settings
from replay.rounds import Rounds
from replay.targets import parse_target
from sim.synthetic import SyntheticWorld, rewarded_log
from storage.config_file import load_config
from storage.model_store import ModelStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=100_000, help="events for load/score/learn")
    parser.add_argument("--distributed-rounds", type=int, default=10_000_000, help="0: skip")
    args = parser.parse_args()
    estimators_figures(args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        log_figures(Path(tmp), args.events)
    if args.distributed_rounds:
        with tempfile.TemporaryDirectory() as tmp:
            distributed_figures(Path(tmp), args.distributed_rounds)


def estimators_figures(n: int, actions: int = 10) -> None:
    rng = np.random.default_rng(0)
    logging = np.full((n, actions), 1 / actions)
    target = rng.dirichlet(np.ones(actions), size=n)
    chosen = rng.integers(actions, size=n)
    reward = (rng.random(n) < 0.3).astype(float)
    q = rng.random((n, actions))
    started = time.perf_counter()
    data = est.OffPolicyData(
        reward=reward, propensity=logging[np.arange(n), chosen],
        target_chosen=target[np.arange(n), chosen], chosen=chosen, target=target, q=q,
    )  # fmt: skip
    results = [e.interval(data) for e in (est.IPS(), est.SNIPS(), est.DR())]
    elapsed = time.perf_counter() - started
    print(f"estimators: IPS + SNIPS + DR with normal intervals on {n:,} rounds x {actions} "
          f"candidates: {elapsed:.2f} s (target < 2 s)")  # fmt: skip
    print("  " + ", ".join(f"{r.estimator} {r.value:.4f}" for r in results))
    started = time.perf_counter()
    est.DR().interval(data, bootstrap=200, seed=0)
    print(f"  DR with a 200-replicate bootstrap: {time.perf_counter() - started:.2f} s")
    bootstrap_figures(data)


def bootstrap_figures(data: est.OffPolicyData, replicates: int = 100) -> None:
    """IPS's 100-replicate bootstrap against obp's method on the same per-round terms: obp
    (0.4) draws `RandomState.choice(terms, n)` and takes its mean, once per replicate. obp
    itself when it is importable (it pins old releases, so not in this project's lock), else
    that loop written out."""
    terms = data.weights * data.reward
    try:
        from obp.utils import estimate_confidence_interval_by_bootstrap as obp_bootstrap

        def baseline() -> None:
            obp_bootstrap(terms, 0.05, replicates, random_state=0)

        name = "obp"
    except ImportError:

        def baseline() -> None:
            rng = np.random.RandomState(0)
            np.quantile([rng.choice(terms, size=len(terms)).mean() for _ in range(replicates)],
                        [0.025, 0.975])  # fmt: skip

        name = "obp's loop"
    timings = {}
    for label, run in (
        ("artbandit", lambda: est.IPS().interval(data, bootstrap=replicates, seed=0)),
        (name, baseline),
    ):
        started = time.perf_counter()
        run()
        timings[label] = time.perf_counter() - started
    again = [est.IPS().interval(data, bootstrap=replicates, seed=7).bootstrap for _ in range(2)]
    print(
        f"  IPS {replicates}-replicate bootstrap on {len(terms):,} rounds: artbandit "
        f"{timings['artbandit']:.2f} s, {name} {timings[name]:.2f} s "
        f"(ratio {timings['artbandit'] / timings[name]:.2f}, target <= 1); the same seed gives "
        f"the same interval: {again[0] == again[1]}"
    )


def log_figures(tmp: Path, count: int) -> None:
    config = load_config(overrides=[f'model_store.path="{tmp / "models"}"'], environ={})
    world = SyntheticWorld(SlotKind.ARTWORK, seed=1, candidates_per_round=10, catalogue_size=400)
    logging_policy = build_policy(SlotConfig(kind=SlotKind.ARTWORK, policy="uniform", seed=1))
    started = time.perf_counter()
    log = rewarded_log(world, logging_policy, "artwork", count)
    print(
        f"\nlog: {count:,} events with 10 candidates made in {time.perf_counter() - started:.1f} s"
    )
    for name in ("log.jsonl", "log.parquet"):
        path = tmp / name
        write_log(path, log)
        started = time.perf_counter()
        read = read_log(str(path), quiet=True)
        elapsed = time.perf_counter() - started
        size = path.stat().st_size / 1e6
        print(f"load {name:<12} {len(read.events) / elapsed:>9,.0f} events/s ({size:.0f} MB)")

    policy = build_policy(config.slots["artwork"])
    for event in log[:5000]:
        policy.learn(event)
    ModelStore(tmp / "models").save("artwork", policy)
    rounds = Rounds.from_events("artwork", log)
    for spec, label in (("store:artwork", "score a saved VW policy"),
                        ("learn:exploration.epsilon=0.1", "learning-policy replay")):  # fmt: skip
        target = parse_target(spec, config, seed=0)
        started = time.perf_counter()
        target.probabilities(None, rounds, quiet=True)
        rate = len(rounds) / (time.perf_counter() - started)
        goal = 20_000 if spec.startswith("store") else 10_000
        print(f"{label:<24} {rate:>9,.0f} events/s (target >= {goal:,})")


def distributed_figures(tmp: Path, rounds: int, partitions: int = 10) -> None:
    """A partitioned log written column by column (a real event's JSON in `event`, which
    these targets never decode), replayed on both engines."""
    started = time.perf_counter()
    write_synthetic_partitions(tmp, rounds, partitions)
    size = sum(p.stat().st_size for p in tmp.glob("*.parquet")) / 1e6
    print(f"\ndistributed: {rounds:,} rounds in {partitions} partitions written in "
          f"{time.perf_counter() - started:.1f} s ({size:.0f} MB)")  # fmt: skip
    loaded, seconds = load_rate(str(tmp))
    print(f"load the round columns: {loaded / seconds:,.0f} rounds/s on one core")
    config = load_config(environ={})
    settings = Settings(estimators=("ips", "clipped_ips", "snips"), bootstrap=100,
                        reward_model=False)  # fmt: skip
    results = {}
    for engine in ("local", "dask"):
        started = time.perf_counter()
        results[engine] = replay_partitioned(
            str(tmp), ["uniform", "default"], config, settings, engine, workers=2
        )
        elapsed = time.perf_counter() - started
        print(f"replay --engine {engine:<6} {elapsed:6.1f} s, {rounds / elapsed:>10,.0f} rounds/s")
    pairs = [
        (a, b)
        for slot_a, slot_b in zip(results["local"].slots, results["dask"].slots, strict=True)
        for t_a, t_b in zip(slot_a.targets, slot_b.targets, strict=True)
        for a, b in zip(t_a.estimates, t_b.estimates, strict=True)
    ]
    differences = [abs(a.value - b.value) + abs(a.std_error - b.std_error) for a, b in pairs]
    identical = all(a == b for a, b in pairs)
    print(f"{len(pairs)} estimates; identical on both engines (bootstrap included): {identical}; "
          f"largest difference {max(differences):.1e} (target <= 1e-12)")  # fmt: skip
    for target in results["dask"].slots[0].targets:
        snips = next(e for e in target.estimates if e.estimator == "snips")
        print(f"  {target.target:<8} SNIPS {snips.value:.5f} [{snips.normal[0]:.5f}, "
              f"{snips.normal[1]:.5f}] over {snips.rounds:,} rounds")  # fmt: skip


def write_synthetic_partitions(directory: Path, rounds: int, partitions: int) -> None:
    """Artwork decisions over 10 candidates, logged with half the mass on the marked default
    and clicks at 10% (20% for the default): columns made with numpy, not event by event."""
    world = SyntheticWorld(SlotKind.ARTWORK, seed=1, candidates_per_round=10, catalogue_size=40)
    template = events.encode(rewarded_log(world, build_policy(SlotConfig(
        kind=SlotKind.ARTWORK, policy="uniform")), "artwork", 1)[0]).decode()  # fmt: skip
    rng = np.random.default_rng(0)
    size = rounds // partitions
    pmf = np.asarray([0.5] + [0.5 / 9] * 9)
    for p in range(partitions):
        chosen = rng.choice(10, size=size, p=pmf).astype(np.int32)
        reward = (rng.random(size) < np.where(chosen == 0, 0.2, 0.1)).astype(float)
        one = pa.array(np.arange(size + 1, dtype=np.int32))  # one entry per list
        weight = np.where(chosen == 0, 1 / pmf[0], 0.0)  # the default's (no probability logged)
        terms = np.column_stack([weight * reward, weight, weight, weight, weight**2,
                                 np.zeros(size)])  # fmt: skip

        def listed(values: np.ndarray, type_: pa.DataType, offsets=one) -> pa.ListArray:
            return pa.ListArray.from_arrays(offsets, pa.array(values, type_))

        table = pa.table({
            "decision_id": [f"{p}-{i}" for i in range(size)],
            "ts": np.arange(size, dtype=float) + p * size,
            "slot": pa.array(["artwork"] * size).dictionary_encode(),
            "group": pa.array(["treatment"] * size).dictionary_encode(),
            "reward": reward,
            "chosen_index": listed(chosen, pa.int32()),
            "probabilities": listed(pmf[chosen], pa.float64()),
            "rewards": listed(reward, pa.float64()),
            "candidates": pa.array(np.full(size, 10, np.int32)),
            "defaults": listed(np.zeros(size, np.int32), pa.int32()),
            "floored": pa.array(np.zeros(size, bool)),
            "default_terms": pa.FixedSizeListArray.from_arrays(pa.array(terms.ravel()), 6),
            "event": pa.array([template] * size).dictionary_encode(),
        })  # fmt: skip
        pq.write_table(table, directory / f"part-{p:05d}.parquet", compression="zstd")


if __name__ == "__main__":
    main()
