"""`artbandit simulate`: simulated home-page traffic against a running decision service,
with feedback on the configured Kafka cluster, and a summary at the end."""

from __future__ import annotations

import sys
import time

from bandit.config import Config
from serving.client import Client
from sim.summary import Printer, final_summary, live_line
from sim.tally import Tally
from sim.traffic import Frontend, TrafficError, drive
from sim.world import World, WorldParams


def simulate(
    config: Config,
    params: WorldParams,
    host: str,
    port: int,
    duration_s: float,
    rate: float,
    seed: int,
    quiet: bool,
) -> int:
    world = World(params)
    tally = Tally(world.tastes)
    say = Printer(sys.stderr, quiet)
    started = time.monotonic()
    try:
        frontend = drive(
            lambda send: Frontend(world, Client(host, port), send, tally, rate, seed),
            config.kafka,
            config.kafka.bootstrap_servers,
            config.kafka.topics.feedback,
            duration_s,
            lambda elapsed: say.live(live_line(tally, elapsed, duration_s, 0)),
        )
    except TrafficError as exc:
        say.end_live()
        print(f"artbandit simulate: {exc}", file=sys.stderr)
        return 1
    say.end_live()
    print(final_summary(tally, time.monotonic() - started))
    print(f"{frontend.sent:,} feedback events sent to {config.kafka.topics.feedback}")
    return 0
