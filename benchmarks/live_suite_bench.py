"""Suite worlds through the live path: the real decision service, broker and learner.

For each world (default: three of the suite, one per slot kind), as `artbandit demo` does:
the embedded broker, one learner and the service (`artbandit serve`) run as child
processes; a client asks `POST /v1/decide` for each request of the world, and sends the
impression (one per position for rows) and any click to the feedback topic right away.
The learner joins, learns and publishes versions that the service hot-loads, so what a
decision knows lags by the attribution window, the publish interval and the reload. The
share of the observable optimum is taken over the treatment decisions of the last 10%
before `--decisions` (control gets the editorial default), next to the in-process share
of the same world and seed (sim/suite.py `play`, every decision).

    python benchmarks/live_suite_bench.py [--decisions 50000] [--world NAME ...]
        [--set KEY=VALUE ...]

Settings that differ from the defaults, so that a run takes minutes, not hours (as the demo
does): attribution window 2 s, allowed lateness 1 s, checkpoint and publish every 2 s,
reload every 0.5 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from suite_bench import world_config

from artbandit.cli import add_common_arguments
from bandit.contracts import events
from bandit.contracts.events import FeedbackEvent
from kafkaio import clients
from kafkaio.embedded_broker import EmbeddedBroker, free_port
from replay.progress import Progress
from serving.client import Client
from sim.demo import Children, wait_ready
from sim.suite import SUITE, SuiteWorld, WorldSpec, play
from storage.config_file import load_config

WORLDS = ("artwork-user-taste", "hero-popularity", "rows-user")
LIVE_SETTINGS = {
    "attribution_window_s": "2.0",
}
PROCESS_SETTINGS = (
    "learner.allowed_lateness_s=1.0",
    "learner.checkpoint_interval_s=2.0",
    "learner.publish_interval_s=2.0",
    "serving.reload_interval_s=0.5",
)


def _body(request, slot: str, user: str, select: int) -> dict:
    return {
        "user": {"id": user, "features": dict(request.context.user)},
        "context": dict(request.context.request),
        "slots": [{
            "slot": slot, "key": "suite", "select": select,
            "candidates": [{"id": c.id, "features": dict(c.features), "default": c.default}
                           for c in request.candidates],
        }],
    }  # fmt: skip


def live_share(spec: WorldSpec, args: argparse.Namespace, out: Path) -> tuple[float, int]:
    """The treatment's share of the optimum over the last 10% of `--decisions`, and how
    many treatment decisions that window held."""
    slot = spec.kind.value
    world = SuiteWorld(spec, args.decisions)
    select = len(world.examination())
    with EmbeddedBroker(port=0) as broker:
        serve_port, metrics_port = free_port(), free_port()
        sets = [f"slots.{slot}.{k}={v}" for k, v in LIVE_SETTINGS.items()]
        sets += [*PROCESS_SETTINGS, *args.overrides]
        sets += [f'kafka.bootstrap_servers="{broker.bootstrap_servers}"',
                 f"serving.port={serve_port}", f"learner.metrics_port={metrics_port}",
                 f'learner.checkpoint_dir="{out / "learner"}"',
                 f'model_store.path="{out / "models"}"']  # fmt: skip
        config = load_config(args.config, sets, environ={})
        config_args = [a for s in sets for a in ("--set", s)]
        if args.config:
            config_args = ["--config", args.config, *config_args]
        (out / "logs").mkdir(parents=True, exist_ok=True)
        children = Children(out / "logs")
        producer = clients.producer(config.kafka, "tool_producer", broker.bootstrap_servers)
        client = Client("127.0.0.1", serve_port)
        value = optimum = 0.0
        counted = 0
        window_start = args.decisions - args.decisions // 10
        progress = Progress(args.decisions, f"{spec.name:<24} live", quiet=args.quiet)
        try:
            children.spawn("learner", ["learn", "--quiet", *config_args])
            children.spawn("server", ["serve", *config_args])
            wait_ready(serve_port, children)
            users = np.random.default_rng(spec.seed + 7)
            for t in range(args.decisions):
                request = world.request(t)
                user = f"u{int(users.integers(20_000))}"
                status, answer = client.post("/v1/decide", _body(request, slot, user, select))
                if status != 200:
                    raise RuntimeError(f"decide answered {status}: {answer}")
                (decision,) = answer["decisions"]
                index = {c.id: i for i, c in enumerate(request.candidates)}
                chosen = [index[c] for c in decision["chosen"]]
                if t >= window_start and decision["group"] == "treatment":
                    value += world.value(request, chosen)
                    optimum += world.value(request, world.observable_optimum(request))
                    counted += 1
                now = time.time()
                ranked = len(chosen) > 1
                feedback = [
                    FeedbackEvent(
                        decision_id=decision["decision_id"],
                        ts=now,
                        type="impression",
                        position=k if ranked else None,
                    )
                    for k in range(len(chosen))
                ]
                for k, clicked in enumerate(world.clicks(request, chosen)):
                    if clicked:
                        feedback.append(FeedbackEvent(
                            decision_id=decision["decision_id"], ts=now, type="click",
                            position=k if ranked else None,
                        ))  # fmt: skip
                for event in feedback:
                    producer.send(config.kafka.topics.feedback,
                                  key=event.decision_id.encode(), value=events.encode(event))  # fmt: skip
                if t % 1000 == 0:
                    children.check()
                    progress.update(t)
            progress.close()
        finally:
            client.close()
            producer.flush(30)
            producer.close(10)
            children.stop_all()
    return value / optimum, counted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=50_000)
    parser.add_argument("--world", action="append", default=[], help=f"default: {WORLDS}")
    add_common_arguments(parser)
    args = parser.parse_args()
    names = args.world or list(WORLDS)
    specs = [s for s in SUITE if s.name in names]
    if len(specs) != len(names):
        print(f"no such world; the suite: {', '.join(s.name for s in SUITE)}", file=sys.stderr)
        return 2
    print(f"{'world':<24} {'slot':<8}{'live':>8}{'in process':>12}{'diff':>8}"
          f"{'treatment in window':>21}{'seconds':>9}")  # fmt: skip
    for spec in specs:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="artbandit-live-") as tmp:
            live, counted = live_share(spec, args, Path(tmp))
        seconds = time.perf_counter() - started
        slot_config = world_config(spec, args).slots[spec.kind.value]
        window = (args.decisions - args.decisions // 10, args.decisions)
        local = play(spec, args.decisions, slot_config).share(*window)
        print(f"{spec.name:<24} {spec.kind.value:<8}{live:>8.1%}{local:>12.1%}"
              f"{(live - local) * 100:>+7.1f}p{counted:>21,}{seconds:>9.0f}", flush=True)  # fmt: skip
    print(f"(share of the observable optimum over the last 10% of {args.decisions:,} decisions; "
          f"live: treatment only, window 2 s, publish every 2 s, reload every 0.5 s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
