"""`artbandit demo`: the whole system on one machine, with zero configuration.

It starts the embedded broker, a learner and the decision service as child processes,
drives simulated traffic at the service for `--duration` seconds while showing how the
treatment and the control group fare, lets the learner close the last attribution windows,
then saves the rewarded log, replays it, and writes a report. Ctrl-C (or SIGTERM) at any
moment stops everything it started; the children also die with it if it is killed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bandit.config import Config, ConfigError
from bandit.contracts.events import RewardedEvent
from bandit.measurement.stats import json_ready
from kafkaio.embedded_broker import EmbeddedBroker, die_with_parent, free_port
from serving.client import Client
from sim import summary
from sim.page import ARTWORK, HERO, ROWS
from sim.summary import live_line
from sim.tally import Tally
from sim.traffic import Frontend, TrafficError, drive
from sim.world import World, WorldParams
from storage.config_file import load_config

# The demo's settings over the defaults (configs/demo.toml shows them; a test keeps the two
# in step). Short windows and frequent publishing let two minutes show learning; a 10%
# holdout gives the control group a readable interval. Learning uses the built-in defaults.
DEMO_SETTINGS: dict[str, Any] = {
    **{f"slots.{slot}.attribution_window_s": 8.0 for slot in (ARTWORK, HERO, ROWS)},
    **{f"slots.{slot}.holdout_fraction": 0.1 for slot in (ARTWORK, HERO, ROWS)},
    "learner.allowed_lateness_s": 2.0,
    "learner.checkpoint_interval_s": 2.0,
    "learner.publish_interval_s": 4.0,
    "serving.reload_interval_s": 1.0,
}


# What the demo asks of replay: the editorial default, chance, and the demo's own VW config
# replayed as if deployed (progressive validation), by the two main estimators.
REPLAY_ARGS = (
    *("--policy", "default", "--policy", "uniform", "--policy", "learn:"),
    *("--estimators", "snips,dr", "--bootstrap", "100", "--segment", "user.fav_genre"),
)


class DemoError(RuntimeError):
    """A part of the demo failed; the message says which and where its log is."""


@dataclass(frozen=True)
class DemoOptions:
    duration_s: float = 100.0
    rate: float = 40.0  # pages per second
    seed: int = 7
    out: Path = Path("var/demo")
    world: WorldParams = field(default_factory=WorldParams)
    config_path: str | None = None
    overrides: Sequence[str] = ()
    quiet: bool = False
    replay: bool = True


@dataclass
class DemoResult:
    tally: Tally
    decisions: int  # decisions the frontend received
    feedback_sent: int
    learned: dict[str, float]  # slot -> examples learned
    published: dict[str, float]  # slot -> newest published version number
    rewarded_events: int
    log_path: Path
    report_path: Path
    replay_path: Path | None
    traffic_s: float  # seconds of traffic


def _setting(key: str, value: Any) -> str:
    if isinstance(value, str):
        return f'{key}="{value}"'
    return f"{key}={value!r}".replace("True", "true").replace("False", "false")


def slot_settings() -> list[str]:
    """The demo's slot settings as `--set` arguments (for replay and the quality benchmark)."""
    return [_setting(k, v) for k, v in DEMO_SETTINGS.items() if k.startswith("slots.")]


def demo_overrides(out: Path, bootstrap: str, serve_port: int, metrics_port: int) -> list[str]:
    """`--set` arguments that give the demo's processes its settings and its own places."""
    places = {
        "kafka.bootstrap_servers": bootstrap,
        "serving.port": serve_port,
        "learner.metrics_port": metrics_port,
        **_stores(out),
    }
    return [_setting(k, v) for k, v in {**DEMO_SETTINGS, **places}.items()]


def _stores(out: Path) -> dict[str, str]:
    """Where the demo keeps what outlives it: its checkpoints and its model store."""
    return {"learner.checkpoint_dir": str(out / "learner"), "model_store.path": str(out / "models")}


class Children:
    """The demo's child processes: each in its own session (Ctrl-C reaches the demo, which
    stops them in order), each dying with the demo if the demo is killed."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._files: list[Any] = []

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        self._files.append(log)
        process = subprocess.Popen(
            [sys.executable, "-m", "artbandit", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.processes[name] = process
        return process

    def check(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise DemoError(
                    f"the {name} exited with code {process.returncode}; see {self.log(name)}"
                    f"\n{self.tail(name)}"
                )

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def tail(self, name: str, lines: int = 8) -> str:
        try:
            text = self.log(name).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in text[-lines:])

    def stop(self, name: str, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; returns the exit code."""
        process = self.processes.pop(name, None)
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        return process.returncode

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name, timeout_s=15.0)
        for log in self._files:
            log.close()


def scrape(port: int) -> dict[str, dict[str, float]]:
    """The learner's metrics: name -> {value of its first label by name (the exposition
    sorts them): value, summed over the other labels}, so a sum over the values counts
    every sample (the lag of each partition of both topics)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    samples: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = next(iter(sample.labels.values()), "")
            by_label = samples.setdefault(sample.name, {})
            by_label[label] = by_label.get(label, 0.0) + sample.value
    return samples


def wait_ready(port: int, children: Children, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        children.check()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise DemoError(f"the decision service was not ready within {timeout_s:.0f} s")


def _reset(out: Path) -> None:
    """The embedded broker starts empty, so state from an earlier run must go too."""
    for name in ("models", "learner", "logs", "replay", "plots"):
        shutil.rmtree(out / name, ignore_errors=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(parents=True, exist_ok=True)


def _demo_config(
    options: DemoOptions, out: Path, broker: EmbeddedBroker, serve_port: int, metrics_port: int
) -> tuple[Config, list[str]]:
    """The demo's config (its settings, its own places, then the caller's), and the
    arguments that give its child processes the same."""
    sets = demo_overrides(out, broker.bootstrap_servers, serve_port, metrics_port)
    sets += list(options.overrides)
    config = load_config(options.config_path, sets)
    for slot in (ARTWORK, HERO, ROWS):
        if slot not in config.slots:
            raise ConfigError(f"slots.{slot}", "the demo's page needs this slot")
    config_args = ["--config", options.config_path] if options.config_path else []
    for setting in sets:
        config_args += ["--set", setting]
    return config, config_args


def run_demo(options: DemoOptions, stream: TextIO = sys.stdout) -> DemoResult:
    out = options.out
    _reset(out)
    world = World(options.world)
    tally = Tally(world.tastes)
    say = summary.Printer(stream, options.quiet)
    say.line(
        f"artbandit demo: {options.duration_s:.0f} s of traffic at {options.rate:g} pages/s"
        f" in a seeded world ({len(world.tastes)} taste clusters, {len(world.titles)} "
        f"titles, {len(world.rows)} rows); files in {out}/"
    )
    with EmbeddedBroker(port=0) as broker:
        serve_port, metrics_port = free_port(), free_port()
        config, config_args = _demo_config(options, out, broker, serve_port, metrics_port)
        say.line(
            f"  broker {broker.bootstrap_servers}, service 127.0.0.1:{serve_port}, "
            f"learner metrics 127.0.0.1:{metrics_port}; logs in {out / 'logs'}/"
        )
        children = Children(out / "logs")
        try:
            children.spawn("learner", ["learn", "--quiet", *config_args])
            children.spawn("server", ["serve", *config_args])
            wait_ready(serve_port, children)
            frontend = _drive(
                options, world, tally, config, serve_port, metrics_port, children, say
            )
            learned, published = _drain(config, metrics_port, children, say)
            code = children.stop("learner")
            if code != 0:
                raise DemoError(
                    f"the learner exited with code {code}; see {children.log('learner')}"
                )
            log_path = out / "rewarded.jsonl.gz"
            logged = _export_log(config, log_path, options.quiet)
            children.stop("server")
        finally:
            children.stop_all()
    shown = _write_config(options, out)
    replay_path = _replay(options, config, log_path, shown, stream) if options.replay else None
    if options.replay:
        _report_lift(config, log_path, logged, shown, stream)
        _audit(config, log_path, logged, shown, stream)
    from sim import report

    report_path = report.write(out, tally, world, replay_path)
    result = DemoResult(
        tally, frontend.decisions, frontend.sent, learned, published, len(logged), log_path,
        report_path, replay_path, options.duration_s,
    )  # fmt: skip
    _write_summary(out / "summary.json", result)
    return result


def _write_summary(path: Path, result: DemoResult) -> None:
    """The run's figures for scripts and tests."""
    rates = summary.group_rates(result.tally)
    figures = {
        "pages": result.tally.pages,
        "impressions": sum(r.impressions for r in result.tally.records()),
        "decisions": result.decisions,
        "feedback_sent": result.feedback_sent,
        "rewarded_events": result.rewarded_events,
        "examples_learned": result.learned,
        "published_versions": result.published,
        "rates": {
            group: {what: dataclasses.asdict(r) for what, r in by_what.items()}
            for group, by_what in rates.items()
        },
        "windows_below_control": summary.windows_below(result.tally, result.traffic_s),
        "log": str(result.log_path),
        "report": str(result.report_path),
        "replay_report": str(result.replay_path) if result.replay_path else None,
    }
    path.write_text(json.dumps(json_ready(figures), indent=2) + "\n")


def _drive(
    options: DemoOptions,
    world: World,
    tally: Tally,
    config: Config,
    serve_port: int,
    metrics_port: int,
    children: Children,
    say: summary.Printer,
) -> Frontend:
    """Traffic in a thread; this thread shows progress and watches the children."""
    learned: dict[str, float] = {}

    def tick(elapsed_s: float) -> None:
        children.check()
        learned.update(scrape(metrics_port).get("artbandit_learner_examples_learned_total", {}))
        say.live(live_line(tally, elapsed_s, options.duration_s, sum(learned.values())))

    try:
        return drive(
            lambda send: Frontend(
                world, Client("127.0.0.1", serve_port), send, tally, options.rate, options.seed
            ),
            config.kafka,
            config.kafka.bootstrap_servers,
            config.kafka.topics.feedback,
            options.duration_s,
            tick,
        )
    except TrafficError as exc:
        raise DemoError(f"the traffic stopped: {exc}") from None
    finally:
        say.end_live()


def _drain(
    config: Config, metrics_port: int, children: Children, say: summary.Printer
) -> tuple[dict[str, float], dict[str, float]]:
    """Wait until the learner has closed every window (its open decisions reach 0)."""
    window = max(s.attribution_window_s for s in config.slots.values())
    limit = window + config.learner.allowed_lateness_s + 30.0
    say.line(f"closing the last attribution windows (up to {limit:.0f} s)...")
    deadline = time.monotonic() + limit
    metrics: dict[str, dict[str, float]] = {}
    while time.monotonic() < deadline:
        children.check()
        metrics = scrape(metrics_port) or metrics
        open_decisions = metrics.get("artbandit_learner_open_decisions")
        if open_decisions is not None and sum(open_decisions.values()) == 0:
            break
        time.sleep(0.5)
    # one more publish interval, so the last examples are in a published version
    time.sleep(min(config.learner.publish_interval_s, 5.0))
    metrics = scrape(metrics_port) or metrics
    return (
        metrics.get("artbandit_learner_examples_learned_total", {}),
        metrics.get("artbandit_learner_published_version", {}),
    )


def _export_log(config: Config, path: Path, quiet: bool) -> list[RewardedEvent]:
    """The rewarded topic, read to its end, written to `path`; its events, each once."""
    from replay.logs import read_log, write_log

    log = read_log(
        f"kafka://{config.kafka.topics.rewarded}", config.kafka.bootstrap_servers, quiet=quiet,
        kafka=config.kafka,
    )  # fmt: skip
    write_log(path, log.events)
    return log.events


def _write_config(options: DemoOptions, out: Path) -> str:
    """The demo's settings and places (its store, its checkpoints; not its ports or broker,
    gone with it) as `out/config.toml`, so the commands it prints run as printed after it;
    returns the `--config ...` to print (with the caller's own config, that and `--set`s)."""
    sets = [_setting(k, v) for k, v in {**DEMO_SETTINGS, **_stores(out)}.items()]
    sets += list(options.overrides)
    if options.config_path:
        return " ".join(["--config", options.config_path, *(f"--set '{s}'" for s in sets)])
    tables: dict[str, list[str]] = {}
    for setting in sets:
        key, _, value = setting.partition("=")
        table, _, name = key.strip().rpartition(".")
        tables.setdefault(table, []).append(f"{name} = {value.strip()}")
    lines = ["# artbandit demo's settings over configs/default.toml; use with --config"]
    for table, entries in tables.items():
        lines += ["", f"[{table}]", *entries] if table else ["", *entries]
    path = out / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return f"--config {path}"


def _report_lift(
    config: Config, log_path: Path, logged: list[RewardedEvent], shown: str, stream: TextIO
) -> None:
    """`artbandit report lift` on the demo's log: the lift per slot with its guardrails and
    the check of off-policy estimation against the holdout."""
    from bandit.measurement.lift import lift_report, table
    from bandit.measurement.tallies import tally

    stream.write(f"\n$ artbandit report lift --log {log_path} {shown}\n")
    stream.write(table(lift_report(tally(logged), config)) + "\n")


def _audit(
    config: Config, log_path: Path, logged: list[RewardedEvent], shown: str, stream: TextIO
) -> None:
    """`artbandit audit` on the demo's log: every sampled decision re-scored with the stored
    version that logged it (the demo keeps the last `model_store.keep_versions`)."""
    from replay.audit import audit, table
    from storage.model_store import ModelStore

    stream.write(f"\n$ artbandit audit --log {log_path} {shown}\n")
    store = ModelStore(config.model_store.path, config.model_store.keep_versions)
    stream.write(table(audit(logged, config, store)) + "\n")


def _replay(
    options: DemoOptions, config: Config, log_path: Path, shown_config: str, stream: TextIO
) -> Path | None:
    """`artbandit replay` on the demo's log, as a data scientist would run it (in process)."""
    from replay import command

    out = options.out / "replay"
    shown = ["--log", str(log_path), *REPLAY_ARGS]
    parser = argparse.ArgumentParser(prog="artbandit replay")
    command.add_arguments(parser)
    args = parser.parse_args([*shown, "--out", str(out)])
    args.quiet = True
    stream.write(f"\n$ artbandit replay {' '.join(shown)} {shown_config}\n")
    stream.flush()
    try:
        replay_config = load_config(options.config_path, slot_settings())
        with contextlib.redirect_stdout(stream):
            code = command.run(args, replay_config)
    except Exception as exc:  # the demo goes on to its summary without a replay report
        stream.write(f"artbandit replay: {type(exc).__name__}: {exc}\n")
        return None
    return out / "report.html" if code == 0 else None
