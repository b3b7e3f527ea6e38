"""The `artbandit` command. Exit codes: 0 success, 2 bad usage or config, 1 runtime failure."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from bandit.config import Config, ConfigError, resolve_bootstrap
from kafkaio import memory
from kafkaio.clients import KafkaSettingsError
from kafkaio.preflight import check_connection
from storage.config_file import load_config


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help="TOML config (default: $ARTBANDIT_CONFIG)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set serving.port=8081 (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def build_parser() -> argparse.ArgumentParser:
    from artbandit import __version__

    parser = argparse.ArgumentParser(prog="artbandit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"artbandit {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    broker = verbs.add_parser("broker", help="run the embedded Kafka-protocol broker")
    add_common_arguments(broker)
    broker.add_argument("--port", type=int, help="port on 127.0.0.1 (default: kafka.embedded_port)")
    broker.set_defaults(run=_run_broker)

    serve = verbs.add_parser("serve", help="run the decision service (Flask under gunicorn)")
    add_common_arguments(serve)
    serve.set_defaults(run=_run_serve)

    learn = verbs.add_parser("learn", help="run a streaming learner (a consumer-group member)")
    add_common_arguments(learn)
    learn.add_argument(
        "--from-rewarded",
        action="store_true",
        help="learn the owned slots from every partition of the rewarded topic, behind "
        "join-only members (learner.learns=false); one per set of slots, its own member",
    )
    learn.set_defaults(run=_run_learn)

    replay = verbs.add_parser("replay", help="estimate candidate policies' value on a rewarded log")
    add_common_arguments(replay)
    replay.set_defaults(run=_run_replay)
    from replay.command import add_arguments

    add_arguments(replay)

    export = verbs.add_parser(
        "export", help="write a rewarded log as partitioned Parquet for a distributed replay"
    )
    add_common_arguments(export)
    export.set_defaults(run=_run_export)
    from replay.command import add_export_arguments

    add_export_arguments(export)

    audit = verbs.add_parser(
        "audit", help="re-score logged decisions with the versions that logged them"
    )
    add_common_arguments(audit)
    audit.set_defaults(run=_run_audit)
    from replay.audit import add_arguments as add_audit_arguments

    add_audit_arguments(audit)

    train = verbs.add_parser(
        "train", help="warm start: train a slot's policy on a rewarded log and publish it"
    )
    add_common_arguments(train)
    train.add_argument(
        "--log", required=True, metavar="SOURCE", help="rewarded log (as for replay --log)"
    )
    train.add_argument("--slot", required=True, help="the slot to train, e.g. artwork")
    train.add_argument("--skip-bad", action="store_true", help="count and skip bad lines")
    train.add_argument(
        "--no-announce", action="store_true", help="store the version; skip the models topic"
    )
    train.set_defaults(run=_run_train)

    tune = verbs.add_parser(
        "tune", help="self-tuning: replay learning settings on the log, switch on a clear gain"
    )
    add_common_arguments(tune)
    tune.set_defaults(run=_run_tune)
    from tuning.tune import add_arguments as add_tune_arguments

    add_tune_arguments(tune)

    report = verbs.add_parser("report", help="reports for product owners: report lift")
    reports = report.add_subparsers(dest="report", required=True, metavar="REPORT")
    lift = reports.add_parser(
        "lift", help="treatment vs control reward per slot: interval, lift, p-value, SRM check"
    )
    add_common_arguments(lift)
    lift.add_argument(
        "--log", required=True, metavar="SOURCE", help="rewarded log (as for replay --log)"
    )
    lift.add_argument("--json", metavar="PATH", help="also write the report as JSON here")
    lift.add_argument("--html", metavar="PATH",
                      help="also write a scorecard here: per slot, the lift with its interval, "
                      "badges, guardrails and the lift as the log grew")  # fmt: skip
    lift.add_argument("--skip-bad", action="store_true", help="count and skip bad lines")
    lift.set_defaults(run=_run_report_lift)

    simulate = verbs.add_parser(
        "simulate", help="drive a running decision service with simulated home-page traffic"
    )
    add_common_arguments(simulate)
    _world_arguments(simulate)
    simulate.add_argument(
        "--url", help="the decision service (default: http://serving.host:serving.port)"
    )
    simulate.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    simulate.add_argument("--rate", type=float, default=20.0, help="pages/s (default 20)")
    simulate.set_defaults(run=_run_simulate)

    demo = verbs.add_parser(
        "demo", help="broker, learner, service and simulated traffic together, then a report"
    )
    add_common_arguments(demo)
    _world_arguments(demo)
    demo.add_argument("--duration", type=float, default=100.0,
                      help="seconds of traffic (default 100; about 2 minutes in all)")  # fmt: skip
    demo.add_argument("--rate", type=float, default=40.0, help="pages/s (default 40)")
    demo.add_argument("--out", default="var/demo", help="where logs, models and reports go")
    demo.add_argument("--no-replay", action="store_true", help="skip the offline replay")
    demo.set_defaults(run=_run_demo)
    return parser


def _world_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--world", metavar="PATH", help="world parameters (TOML; default: configs/world.toml's)"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the traffic (default 7)")


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ConfigError(name, "must be positive")
    return value


def _run_broker(args: argparse.Namespace, config: Config) -> int:
    from kafkaio.embedded_broker import EmbeddedBroker

    port = args.port if args.port is not None else config.kafka.embedded_port
    if not 0 <= port <= 65535:
        raise ConfigError("--port", f"{port} is not a TCP port")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with EmbeddedBroker(port=port, tie_to_parent=True) as broker:
        print(
            f"embedded broker listening on {broker.bootstrap_servers} (Ctrl-C to stop)", flush=True
        )
        while not stop.wait(0.5):
            if not broker.alive():
                print("embedded broker exited unexpectedly", file=sys.stderr)
                return 1
    return 0


def _run_serve(args: argparse.Namespace, config: Config) -> int:
    from serving.gunicorn_app import serve

    def reload_config() -> Config:
        return load_config(args.config, args.overrides)

    with _kafka(config) as resolved:
        return serve(resolved, reload_config)


def _run_learn(args: argparse.Namespace, config: Config) -> int:
    import logging

    from kafkaio.forked import lower_priority
    from learner.loop import KafkaLearner
    from learner.rewarded_loop import RewardedLearner

    lower_priority(config.learner.nice)  # background work beside the service
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")  # fmt: skip
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with _kafka(config) as resolved:
        kind = RewardedLearner if args.from_rewarded else KafkaLearner
        learner = kind(resolved, resolved.kafka.bootstrap_servers, progress=not args.quiet)
        learner.run(stop)
    return 0


@contextlib.contextmanager
def _kafka(config: Config) -> Iterator[Config]:
    """The config with real bootstrap servers: `embedded` means the embedded broker on
    `kafka.embedded_port`, started here (and stopped after) when none is running there."""
    import msgspec

    from kafkaio.embedded_broker import EmbeddedBroker, broker_answers

    kafka = config.kafka
    if kafka.bootstrap_servers != "embedded":
        check_connection(kafka)
        yield config
        return

    def served_by(servers: str) -> Config:
        return msgspec.structs.replace(
            config, kafka=msgspec.structs.replace(kafka, bootstrap_servers=servers)
        )

    if broker_answers("127.0.0.1", kafka.embedded_port):
        yield served_by(f"127.0.0.1:{kafka.embedded_port}")
        return
    with EmbeddedBroker(port=kafka.embedded_port) as broker:
        print(f"started the embedded broker on {broker.bootstrap_servers}", file=sys.stderr)
        yield served_by(broker.bootstrap_servers)


def _run_replay(args: argparse.Namespace, config: Config) -> int:
    from replay.command import run

    return run(args, config)


def _run_export(args: argparse.Namespace, config: Config) -> int:
    from replay.command import run_export

    return run_export(args, config)


def _run_audit(args: argparse.Namespace, config: Config) -> int:
    from replay.audit import run

    return run(args, config)


def _run_train(args: argparse.Namespace, config: Config) -> int:
    from replay.logs import LogError, read_log_argument
    from storage.model_store import ModelStoreError
    from training.train import TrainError, announce, train

    try:
        log = read_log_argument(args, config)
        trained = train(config, args.slot, log.events, quiet=args.quiet)
    except (LogError, TrainError) as exc:
        print(f"artbandit train: {exc}", file=sys.stderr)
        return 2
    except (OSError, ModelStoreError) as exc:
        print(f"artbandit train: cannot store the version: {exc}", file=sys.stderr)
        return 1
    info = trained.version
    print(f"trained {args.slot} on {trained.learned:,} of its {trained.events:,} events in "
          f"{args.log}: stored {info.slot}/{info.version}")  # fmt: skip
    if args.no_announce:
        return 0
    with _kafka(config) as resolved:
        try:
            announce(resolved, resolved.kafka.bootstrap_servers, info)
        except Exception as exc:  # kafka-python's errors vary; the version is stored either way
            print(f"artbandit train: stored, but not announced on "
                  f"{config.kafka.topics.models}: {exc}", file=sys.stderr)  # fmt: skip
            return 1
    print(f"announced {info.slot}/{info.version} on {config.kafka.topics.models}")
    return 0


def _run_tune(args: argparse.Namespace, config: Config) -> int:
    from tuning.tune import run

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return run(args, config, resolve_bootstrap(config), stop)


def _run_report_lift(args: argparse.Namespace, config: Config) -> int:
    import json

    from bandit.measurement.lift import lift_over_time, lift_report, table, to_dict
    from bandit.measurement.tallies import tally
    from replay.logs import LogError, read_log_argument

    try:
        log = read_log_argument(args, config)
    except LogError as exc:
        print(f"artbandit report lift: {exc}", file=sys.stderr)
        return 2
    if not log.events:
        print(f"artbandit report lift: {args.log} has no events", file=sys.stderr)
        return 2
    report = lift_report(tally(log.events), config)
    print(f"lift of {args.log}: {len(log.events):,} rewarded decisions, intent-to-treat by "
          "assigned group, people as units")  # fmt: skip
    print(table(report))
    if args.json:
        _write_text(args.json, json.dumps(to_dict(report), indent=2) + "\n")
    if args.html:
        from replay import scorecard

        page = scorecard.to_html(report, lift_over_time(log.events, config), str(args.log))
        _write_text(args.html, page)
        print(f"scorecard: {args.html}")
    return 0


def _write_text(path: str, text: str) -> None:
    """Write a report where asked, making its directory if need be."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def _run_simulate(args: argparse.Namespace, config: Config) -> int:
    from urllib.parse import urlsplit

    from sim.simulate import simulate
    from sim.world import load_world

    world = load_world(args.world)
    url = urlsplit(args.url or f"http://{config.serving.host}:{config.serving.port}")
    if url.scheme != "http" or not url.hostname:
        raise ConfigError("--url", f"{args.url!r} is not an http://host:port URL")
    duration, rate = _positive("--duration", args.duration), _positive("--rate", args.rate)
    with _kafka(config) as resolved:
        return simulate(resolved, world, url.hostname, url.port or 80, duration, rate, args.seed,
                        args.quiet)  # fmt: skip


def _run_demo(args: argparse.Namespace, config: Config) -> int:
    from pathlib import Path

    from sim.demo import DemoOptions, run_demo
    from sim.summary import final_summary
    from sim.world import load_world

    options = DemoOptions(
        duration_s=_positive("--duration", args.duration),
        rate=_positive("--rate", args.rate),
        seed=args.seed,
        out=Path(args.out),
        world=load_world(args.world),
        config_path=args.config,
        overrides=args.overrides,
        quiet=args.quiet,
        replay=not args.no_replay,
    )
    # Ctrl-C and SIGTERM stop the children, even when started with SIGINT ignored (nohup, &)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        result = run_demo(options)
    except KeyboardInterrupt:
        print("\nartbandit demo: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    print()
    print(final_summary(result.tally, result.traffic_s))
    versions = ", ".join(f"{slot} v{int(v)}" for slot, v in sorted(result.published.items()))
    learned = sum(result.learned.values())
    print(
        f"published policy versions: {versions or 'none'}; {learned:,.0f} examples learned, "
        f"{result.rewarded_events:,} rewarded events in {result.log_path}"
    )
    reports = [str(result.report_path)] + ([str(result.replay_path)] if result.replay_path else [])
    print(f"reports: {'  '.join(reports)}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    memory.steady_allocator()  # before a buffer is allocated, in every artbandit process
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        code: int = args.run(args, config)
        return code
    except (ConfigError, KafkaSettingsError) as exc:
        print(f"artbandit {args.verb}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a runtime failure: say what, exit 1, no traceback for users
        print(f"artbandit {args.verb}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
