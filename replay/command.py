"""`artbandit replay`: off-policy estimates of candidate policies over a rewarded log.

The CLI builds every verb's parser at start, this module's too; the Parquet parts (pyarrow,
60 MB and 0.4 s to import) are imported only by the verbs that read or write Parquet, so a
learner, a tuner or the service never loads them."""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from bandit.config import Config, ConfigError
from replay import estimators as est
from replay.evaluate import evaluate
from replay.logs import LogError, read_log_argument
from replay.rejection import NotUniformError
from replay.report import table, to_html, to_json
from replay.results import ReplayResult, Settings
from replay.rounds import Rounds
from replay.targets import TargetError, parse_target

DEFAULT_TARGETS = ("uniform", "default")
SEARCH_GAMMA_SCALE = (100.0, 500.0, 2000.0)
SEARCH_LEARNING_RATE = (0.05, 0.1, 0.3)
SEARCH_INTERACTIONS = ('["UA", "UI"]', '["UA", "UI", "CA", "CI"]')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log",
        required=True,
        metavar="SOURCE",
        help="rewarded log: .jsonl, .jsonl.gz, .parquet, kafka://TOPIC, or a directory of "
        ".parquet partitions (artbandit export) replayed partition by partition",
    )
    parser.add_argument(
        "--engine",
        default="local",
        metavar="ENGINE",
        help="where a partitioned log's partitions are computed: local (this process), dask "
        "(a local Dask cluster of --workers processes) or tcp://HOST:PORT (a running Dask "
        "scheduler); the estimates are the same on every engine (default local)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="--engine dask: worker processes (default 2)"
    )
    parser.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="SPEC",
        help="target policy (repeatable): uniform, default, thompson, logged, "
        "store:SLOT[@vN][:greedy], "
        "'train:KEY=VALUE ...', 'learn:KEY=VALUE ...', python:MODULE:FUNCTION "
        f"(default: {', '.join(DEFAULT_TARGETS)})",
    )
    parser.add_argument(
        "--logger",
        default="logged",
        metavar="SPEC",
        help="ranked slots: the policy that logged, as a target spec, for the independent and "
        "pseudo-inverse page values (default: logged, the versions in the model store)",
    )
    parser.add_argument(
        "--max-rankings",
        type=int,
        default=1000,
        help="ranked slots: the most orderings of a page to enumerate for those (default 1000)",
    )
    parser.add_argument(
        "--search", action="store_true", help="also replay a grid of learning configs and rank them"
    )
    parser.add_argument(
        "--estimators",
        default=",".join(est.NAMES),
        help=f"comma-separated (default: {','.join(est.NAMES)})",
    )
    parser.add_argument(
        "--slot", action="append", default=[], help="slots to evaluate (default: all)"
    )
    parser.add_argument(
        "--train-fraction",
        type=float,
        default=0.5,
        help="share of events (time order) that trains targets (default 0.5)",
    )
    parser.add_argument(
        "--no-reward-model",
        action="store_true",
        help="skip the reward model (and DM, DR, SNDR, Switch-DR)",
    )
    parser.add_argument("--bootstrap", type=int, default=200, help="replicates (0: none)")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--segment",
        metavar="FEATURE",
        help="break estimates down by user.<name>, request.<name> or group",
    )
    parser.add_argument(
        "--rejection",
        action="store_true",
        help="cross-check with rejection sampling (uniformly logged data only)",
    )
    parser.add_argument("--clip", type=float, default=20.0, help="clipped IPS's max weight")
    parser.add_argument("--switch-tau", type=float, default=20.0, help="Switch-DR's threshold")
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="count and skip lines that break the contract instead of stopping",
    )
    parser.add_argument(
        "--out",
        default="var/replay",
        metavar="DIR",
        help="where report.json and report.html go (default var/replay)",
    )


def run(args: argparse.Namespace, config: Config) -> int:
    from replay.columnar import ColumnarError
    from replay.partitioned import replay_partitioned

    settings = _settings(args)
    specs = list(args.policy) or list(DEFAULT_TARGETS)
    if args.search:
        specs += search_specs()
    try:
        if Path(args.log).is_dir():
            result = replay_partitioned(
                args.log, specs, config, settings, args.engine, args.workers, args.quiet
            )
            return _write(result, args)
        if args.engine != "local":
            raise LogError(f"--engine {args.engine}: only a directory of partitions is distributed")
        targets = [parse_target(spec, config, args.seed) for spec in specs]
        log = read_log_argument(args, config)
        result = evaluate(log, targets, config, settings, quiet=args.quiet)
    except (LogError, ColumnarError, TargetError, NotUniformError, est.EstimatorError) as exc:
        print(f"artbandit replay: {exc}", file=sys.stderr)
        return 2
    return _write(result, args)


def _write(result: ReplayResult, args: argparse.Namespace) -> int:
    print(table(result))
    if args.search:
        print(ranking(result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_bytes(to_json(result))
    (out / "report.html").write_text(to_html(result))
    print(f"\nreports: {out / 'report.json'}  {out / 'report.html'}")
    return 0


def search_specs() -> list[str]:
    """A small grid around the defaults (SquareCB's gamma scale, learning rate,
    interactions), as learn: targets."""
    return [
        f"learn:exploration.squarecb_gamma_scale={gamma} learning_rate={rate} "
        f"interactions={interactions}"
        for gamma, rate, interactions in itertools.product(
            SEARCH_GAMMA_SCALE, SEARCH_LEARNING_RATE, SEARCH_INTERACTIONS
        )
    ]


def ranking(result: ReplayResult) -> str:
    """The learn: targets of each slot, best SNIPS first (position 0 for rows)."""
    lines = []
    for slot in result.slots:
        scored = []
        for target in slot.targets:
            if target.target.startswith("learn:") and target.position in (None, 0):
                snips = next((e for e in target.estimates if e.estimator == "snips"), None)
                if snips is not None:
                    scored.append((snips.value, snips, target.target))
        scored.sort(key=lambda item: -item[0])
        lines.append(f"\nsearch ({slot.slot}), best SNIPS first:")
        for rank, (_, snips, name) in enumerate(scored[:10], start=1):
            lines.append(f"  {rank:>2}. {snips.value:.4f} {_bounds(snips.normal)}  {name}")
    return "\n".join(lines)


def _bounds(bounds: tuple[float, float]) -> str:
    return f"[{bounds[0]:.4f}, {bounds[1]:.4f}]"


def _settings(args: argparse.Namespace) -> Settings:
    names = tuple(n.strip() for n in args.estimators.split(",") if n.strip())
    try:
        est.make_estimators(names)
    except ValueError as exc:
        raise ConfigError("--estimators", str(exc)) from None
    if not 0 < args.train_fraction < 1:
        raise ConfigError("--train-fraction", "must be between 0 and 1")
    if not 0 < args.confidence < 1:
        raise ConfigError("--confidence", "must be between 0 and 1")
    if args.bootstrap < 0:
        raise ConfigError("--bootstrap", "must be 0 or more")
    if args.workers < 1:
        raise ConfigError("--workers", "must be 1 or more")
    if args.max_rankings < 1:
        raise ConfigError("--max-rankings", "must be 1 or more")
    if args.clip <= 0 or args.switch_tau <= 0:
        raise ConfigError("--clip/--switch-tau", "must be positive")
    if args.segment:
        try:
            Rounds.check_segment(args.segment)
        except ValueError as exc:
            raise ConfigError("--segment", str(exc).removeprefix("segment: ")) from None
    return Settings(
        estimators=names,
        confidence=args.confidence,
        bootstrap=args.bootstrap,
        seed=args.seed,
        train_fraction=args.train_fraction,
        reward_model=not args.no_reward_model,
        max_weight=args.clip,
        switch_tau=args.switch_tau,
        segment=args.segment,
        rejection=args.rejection,
        slots=tuple(args.slot),
        logger=args.logger,
        max_rankings=args.max_rankings,
    )


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log",
        required=True,
        metavar="SOURCE",
        help=".jsonl, .jsonl.gz, .parquet or kafka://TOPIC",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="directory of partitions")
    parser.add_argument(
        "--rows-per-file", type=int, default=1_000_000, help="events per partition (1,000,000)"
    )
    parser.add_argument("--skip-bad", action="store_true", help="as for replay")


def run_export(args: argparse.Namespace, config: Config) -> int:
    """A log as a partitioned Parquet log: each decision once, in time order."""
    from replay.columnar import write_partitions

    if args.rows_per_file < 1:
        raise ConfigError("--rows-per-file", "must be 1 or more")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "a file" if not out.is_dir() else "a directory that is not empty"
        raise ConfigError("--out", f"{out} is {what}; name a new or empty directory")
    try:
        log = read_log_argument(args, config)
    except LogError as exc:
        print(f"artbandit export: {exc}", file=sys.stderr)
        return 2
    paths = write_partitions(log.events, args.out, args.rows_per_file)
    print(f"{len(log.events):,} events in {len(paths)} partitions under {args.out}")
    return 0
