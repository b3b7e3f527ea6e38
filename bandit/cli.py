"""The `artbandit` command. Exit codes: 0 success, 2 bad usage or config, 1 runtime failure."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from bandit.config import Config, ConfigError, load_config


def _common(parser: argparse.ArgumentParser) -> None:
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
    parser = argparse.ArgumentParser(prog="artbandit", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    broker = verbs.add_parser("broker", help="run the embedded Kafka-protocol broker")
    _common(broker)
    broker.add_argument("--port", type=int, help="port on 127.0.0.1 (default: kafka.embedded_port)")
    broker.set_defaults(run=_run_broker)

    serve = verbs.add_parser("serve", help="run the decision service (Flask under gunicorn)")
    _common(serve)
    serve.set_defaults(run=_run_serve)

    learn = verbs.add_parser("learn", help="run a streaming learner (a consumer-group member)")
    _common(learn)
    learn.set_defaults(run=_run_learn)

    replay = verbs.add_parser("replay", help="estimate candidate policies' value on a rewarded log")
    _common(replay)
    replay.set_defaults(run=_run_replay)
    from replay.command import add_arguments

    add_arguments(replay)

    demo = verbs.add_parser("demo", help="watch each slot's policy learn in a synthetic world")
    _common(demo)
    demo.add_argument("--rounds", type=int, default=20_000, help="rounds per slot (default 20000)")
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(run=_run_demo)
    return parser


def _run_broker(args: argparse.Namespace, config: Config) -> int:
    from bandit.embedded_broker import EmbeddedBroker

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

    from bandit.learner.loop import KafkaLearner

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")  # fmt: skip
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with _kafka(config) as resolved:
        learner = KafkaLearner(resolved, resolved.kafka.bootstrap_servers, progress=not args.quiet)
        learner.run(stop)
    return 0


@contextlib.contextmanager
def _kafka(config: Config) -> Iterator[Config]:
    """The config with real bootstrap servers: `embedded` means the embedded broker on
    `kafka.embedded_port`, started here (and stopped after) when none is running there."""
    import msgspec

    from bandit.embedded_broker import EmbeddedBroker, broker_answers

    kafka = config.kafka
    if kafka.bootstrap_servers != "embedded":
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


def _run_demo(args: argparse.Namespace, config: Config) -> int:
    from bandit import offline_demo

    if args.rounds < 10:
        raise ConfigError("--rounds", "must be at least 10")
    results = offline_demo.run(config, args.rounds, args.seed, args.quiet)
    print(offline_demo.summary(results))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        return args.run(args, config)
    except ConfigError as exc:
        print(f"artbandit {args.verb}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a runtime failure: say what, exit 1, no traceback for users
        print(f"artbandit {args.verb}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
