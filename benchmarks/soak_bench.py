"""An hour of the whole system on this machine, watched for slow leaks.

The embedded broker, `artbandit serve` (2 workers) behind the shipped nginx front, one
`artbandit learn` and `artbandit tune --every 600` run as processes. Client threads ask the
front for home pages (6 artwork slots, the hero with a new title sent with `"floor": true`,
3 rows of 8) at half the capacity the whole system sustains (`--share`; the host's cores
over the CPU time all its processes spend per page of a burst, learning included), and
post feedback for each page to `/v1/feedback`: impressions (one per position for rows), clicks, plays; a fifth of
the pages are never shown (no feedback), a tenth come without consent to personalization.
A shadow policy runs on the artwork slot; the hero has an exposure floor and share window.

Every minute it records, per process, RSS, open file descriptors and threads, and the
minute's decide p99 (client side, through nginx), the learner's consumer lag and the
events dropped. At the end it stops the traffic, lets the learner close every window and
reconciles: decisions served (answered with an id) = logged (on the decisions topic) =
joined and impressed + not impressed (on the rewarded topic), each distinct.

Pass: after the warm-up, no process's RSS grows more than 10% (the broker keeps every
message in memory, so its RSS is shown per stored message and not judged); descriptors and
threads stay flat; every minute's p99 is within 1.5x of the first 10 minutes'; 0 events
lost; the reconciliation is exact. Prints a table and writes a PNG of the series.

    python benchmarks/soak_bench.py [--minutes 60] [--warmup 5] [--out var/soak]

Settings that differ from the defaults, so that every window closes within the run: the
attribution window is 60 s (default 1,800 s) and the allowed lateness 10 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from array import array
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from bandit.contracts.kafka import KafkaConfig
from kafkaio.embedded_broker import EmbeddedBroker, die_with_parent, free_port
from kafkaio.read import read_topic
from sim.demo import scrape

REPO = Path(__file__).resolve().parents[1]
ARTBANDIT = str(Path(sys.executable).with_name("artbandit"))
SLOTS = ("artwork", "hero", "rows")
SETTINGS = [
    *(f"slots.{slot}.attribution_window_s=60" for slot in SLOTS),
    "learner.allowed_lateness_s=10",
    'slots.artwork.shadow.settings=["learning_rate=0.3"]',
    "slots.hero.exposure.floor=0.05",
    "slots.hero.exposure.below_share=0.02",
    'slots.rows.unconsented="context"',
]
CLIENTS = 4


@dataclass
class Counts:
    """What the clients saw, shared by their threads (appends under the GIL). Decision ids
    are kept as 64-bit hashes: millions of them fit in tens of MB."""

    served: array = field(default_factory=lambda: array("q"))  # decision ids answered
    impressed: array = field(default_factory=lambda: array("q"))  # ids with an impression
    latencies: list[float] = field(default_factory=list)  # this minute's, seconds
    pages: int = 0
    failures: list[str] = field(default_factory=list)


class _Id(msgspec.Struct):
    decision_id: str


_ids = msgspec.json.Decoder(_Id)


def distinct(hashes: array | list[int]) -> np.ndarray:
    return np.unique(np.asarray(hashes, dtype=np.int64))


def page(rng: np.random.Generator, n: int) -> tuple[dict, bool]:
    user = f"u{rng.integers(50_000)}"
    consent = rng.random() >= 0.1
    titles = rng.choice(200, size=6, replace=False)
    body = {
        "user": {"id": user, "features": {"taste": f"g{rng.integers(8)}", "age": int(rng.integers(18, 80))}},
        "consent": {"personalization": consent},
        "context": {"device": str(rng.choice(["tv", "web", "phone"]))},
        "slots": [
            *({"slot": "artwork", "key": f"title:{t}",
               "candidates": [{"id": f"t{t}-a{a}", "features": {"tone": f"t{a}"}} for a in range(4)]}
              for t in titles),
            {"slot": "hero", "key": "hero",
             "candidates": [{"id": f"hero{h}", "features": {"genre": f"g{h % 5}"}} for h in range(6)]
             + [{"id": f"new{n % 50}", "floor": True, "features": {"genre": "new"}}]},
            {"slot": "rows", "key": "home", "select": 3,
             "candidates": [{"id": f"row{r}", "features": {"genre": f"g{r}"}} for r in range(8)]},
        ],
    }  # fmt: skip
    return body, bool(rng.random() >= 0.2)  # shown?


def feedback(rng: np.random.Generator, decisions: list[dict]) -> list[dict]:
    now, out = time.time(), []
    for decision in decisions:
        if decision["decision_id"] is None:
            continue
        base = {"decision_id": decision["decision_id"], "ts": now}
        if decision["slot"] == "rows":
            out += [{**base, "type": "impression", "position": p} for p in range(3)]
            if rng.random() < 0.1:
                out.append({**base, "type": "click", "position": int(rng.integers(3))})
        else:
            out.append({**base, "type": "impression"})
            if rng.random() < 0.05:
                out.append({**base, "type": "click"})
                if rng.random() < 0.5:
                    out.append({**base, "type": "play", "value": float(rng.integers(1, 60))})
    return out


def client(port: int, seed: int, rate: float | None, stop: threading.Event, counts: Counts) -> None:
    """Pages at `rate` per second (None: as fast as answered) until `stop`."""
    rng = np.random.default_rng(seed)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    next_at, n = time.monotonic(), 0
    while not stop.is_set():
        if rate is not None:
            wait = next_at - time.monotonic()
            if wait > 0:
                stop.wait(wait)
                continue
            next_at = max(next_at + 1.0 / rate, time.monotonic() - 1.0)
        body, shown = page(rng, n)
        n += 1
        try:
            started = time.perf_counter()
            connection.request("POST", "/v1/decide", body=json.dumps(body), headers=headers)
            response = connection.getresponse()
            answer = json.loads(response.read())
            counts.latencies.append(time.perf_counter() - started)
            if response.status != 200:
                counts.failures.append(f"decide {response.status}: {answer}")
                continue
            decisions = answer["decisions"]
            counts.served.extend(hash(d["decision_id"]) for d in decisions if d["decision_id"])
            counts.pages += 1
            if shown:
                sent = feedback(rng, decisions)
                if sent:
                    connection.request("POST", "/v1/feedback", body=json.dumps(sent),
                                       headers=headers)  # fmt: skip
                    response = connection.getresponse()
                    response.read()
                    if response.status != 202:
                        counts.failures.append(f"feedback {response.status}")
                    else:
                        counts.impressed.extend({hash(e["decision_id"]) for e in sent})
        except (OSError, http.client.HTTPException) as exc:
            counts.failures.append(f"{type(exc).__name__}: {exc}")
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)


class System:
    """The processes under test, started in order and stopped in reverse."""

    def __init__(self, root: Path):
        self.root = root
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.broker = EmbeddedBroker()
        self.service_port, self.front_port, self.metrics_port = (
            free_port(),
            free_port(),
            free_port(),
        )

    def settings(self) -> list[str]:
        suffix = uuid.uuid4().hex[:6]
        return [
            f'kafka.bootstrap_servers="{self.broker.bootstrap_servers}"',
            f'model_store.path="{self.root / "models"}"',
            f'learner.checkpoint_dir="{self.root / "checkpoints"}"',
            f"learner.metrics_port={self.metrics_port}",
            f"serving.port={self.service_port}",
            "serving.workers=2",
            f'learner.group_id="soak-{suffix}"',
            *SETTINGS,
        ]

    def start(self) -> None:
        self.broker.start()
        sets = [f"--set={s}" for s in self.settings()]
        env = {k: v for k, v in os.environ.items()
               if k not in ("ARTBANDIT_CONFIG", "PROMETHEUS_MULTIPROC_DIR")}  # fmt: skip
        for name, verb in (("learner", ["learn", "--quiet"]), ("service", ["serve"])):
            self._spawn(name, [ARTBANDIT, *verb, *sets], env)
        conf = (REPO / "configs/nginx/nginx.conf").read_text()
        conf = conf.replace("listen 8000;", f"listen 127.0.0.1:{self.front_port};")
        conf = conf.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{self.service_port};")
        (self.root / "nginx.conf").write_text(conf)
        (self.root / "tmp").mkdir(exist_ok=True)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self._spawn("nginx", [nginx, "-p", str(self.root), "-c", str(self.root / "nginx.conf")],
                    env)  # fmt: skip
        deadline = time.monotonic() + 90
        while not _answers(self.front_port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the front did not answer in 90 s; logs in {self.root}")
            time.sleep(0.5)
        self._spawn("tuner", [ARTBANDIT, "tune", "--every", "600", "--quiet", *sets], env)

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.root / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(args, env=env, stdout=log, stderr=log,
                                                start_new_session=True,
                                                preexec_fn=die_with_parent)  # fmt: skip

    def pids(self) -> dict[str, int]:
        """role -> pid, the children of serve and nginx by role."""
        found = {"bench": os.getpid()}
        assert self.broker.process is not None
        found["broker"] = self.broker.process.pid
        for name, process in self.processes.items():
            found[name if name not in ("service", "nginx") else f"{name} master"] = process.pid
        for master, children in (("service", _children(self.processes["service"].pid)),
                                 ("nginx", _children(self.processes["nginx"].pid))):  # fmt: skip
            workers = 0
            for pid in sorted(children):
                cmdline = _read(f"/proc/{pid}/cmdline")
                if b"serving.shipper" in cmdline:
                    found["shipper"] = pid
                else:
                    workers += 1
                    found[f"{master} worker {workers}"] = pid
        return found

    def stop(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        for name in ("tuner", "nginx", "service", "learner"):
            process = self.processes[name]
            process.send_signal(signal.SIGTERM)
            try:
                codes[name] = process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = None
        self.broker.stop()
        return codes


def _answers(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return b""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _read(f"/proc/{entry.name}/stat").rsplit(b")", 1)
            if len(stat) == 2 and int(stat[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def process_sample(pid: int) -> tuple[float, int, int]:
    """(RSS MB, open descriptors, threads) of `pid`."""
    rss, threads = 0.0, 0
    for line in _read(f"/proc/{pid}/status").decode(errors="replace").splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = 0
    return rss, fds, threads


def service_metric(port: int, name: str) -> float:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    except OSError:
        return float("nan")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))  # fmt: skip


def capacity(system: System, seconds: float = 20.0) -> tuple[float, float, Counts]:
    """Pages/s through the front at full load for `seconds`, and what the whole host
    sustains: its cores over the CPU time every process on it (this client too) spent on a
    page, counted until the learner has read, closed and learned all that the burst logged.
    The learner's main cost, closing windows and learning, comes one attribution window
    after the decisions, so its lag back to 0 right after a burst (what this measured
    before) overstated the capacity by half: a soak at half of it fell behind for good."""
    pids = system.pids()
    cpu_before = _cpu_seconds(pids.values())
    front, counts = _full_load(system.front_port, seconds)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        learner = scrape(system.metrics_port)
        if learner_lag(learner) == 0 and _open_decisions(learner) == 0:
            break
        time.sleep(0.5)
    else:
        raise RuntimeError(f"the learner did not learn the burst within 600 s; logs in "
                           f"{system.root}")  # fmt: skip
    cpu = _cpu_seconds(pids.values()) - cpu_before
    return front, counts.pages * (os.cpu_count() or 1) / cpu, counts


def _cpu_seconds(pids: Iterable[int]) -> float:
    """User and system CPU time of `pids` so far (a process gone counts nothing)."""
    ticks = 0
    for pid in pids:
        try:
            fields = _read(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def _open_decisions(learner: dict[str, dict[str, float]]) -> float:
    values = learner.get("artbandit_learner_open_decisions")
    return sum(values.values()) if values else float("nan")


def learner_lag(learner: dict[str, dict[str, float]]) -> float:
    """The learner's consumer lag over every topic and partition; NaN before its first fetch
    or when it does not answer."""
    lags = learner.get("artbandit_learner_consumer_lag")
    return sum(lags.values()) if lags else float("nan")


def _full_load(port: int, seconds: float) -> tuple[float, Counts]:
    counts, stop = Counts(), threading.Event()
    threads = [threading.Thread(target=client, args=(port, 1000 + i, None, stop, counts))
               for i in range(CLIENTS)]  # fmt: skip
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(40)
    return counts.pages / seconds, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("var/soak"))
    parser.add_argument("--share", type=float, default=0.5,
                        help="of the capacity the whole system sustains (default 0.5; the "
                             "embedded broker keeps every message in memory, about 1.9 KB per "
                             "decision with its feedback and rewarded event)")  # fmt: skip
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    # SIGTERM (or SIGINT, which a background job ignores) stops the system it started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    system = System(args.out.resolve())
    system.start()
    try:
        return run(system, args)
    finally:
        codes = system.stop()
        print(f"exit codes after SIGTERM: {codes}")


def run(system: System, args: argparse.Namespace) -> int:
    front, sustained, calibration = capacity(system)
    rate = sustained * args.share
    print(f"capacity: {front:.1f} pages/s through the front for 20 s, {sustained:.1f} sustained "
          f"by the host, learning included ({8 * sustained:.0f} decisions/s); soaking at "
          f"{rate:.1f} pages/s ({args.share:.0%}) for {args.minutes:g} min", flush=True)  # fmt: skip
    counts, stop = Counts(), threading.Event()
    counts.served.extend(calibration.served)
    counts.impressed.extend(calibration.impressed)
    threads = [threading.Thread(target=client, args=(system.front_port, i, rate / CLIENTS, stop,
                                                     counts), daemon=True)
               for i in range(CLIENTS)]  # fmt: skip
    for thread in threads:
        thread.start()
    rows: list[dict] = []
    started = time.monotonic()
    for minute in range(1, int(args.minutes) + 1):
        time.sleep(max(0.0, started + 60 * minute - time.monotonic()))
        latencies, counts.latencies = counts.latencies, []
        learner = scrape(system.metrics_port)
        row = {
            "minute": minute,
            "pages": counts.pages,
            "p99_ms": 1000 * float(np.percentile(latencies, 99)) if latencies else float("nan"),
            "lag": learner_lag(learner),
            "open": sum(learner.get("artbandit_learner_open_decisions", {}).values()),
            "dropped": service_metric(system.service_port, "artbandit_events_dropped_total"),
            "failures": len(counts.failures),
            "processes": {role: process_sample(pid) for role, pid in system.pids().items()},
        }
        rows.append(row)
        rss = "  ".join(f"{role} {s[0]:.0f}" for role, s in row["processes"].items())
        print(f"min {minute:3d}  pages {row['pages']:8d}  p99 {row['p99_ms']:6.1f} ms  "
              f"lag {row['lag']:6.0f}  dropped {row['dropped']:.0f}  RSS MB: {rss}", flush=True)  # fmt: skip
    stop.set()
    for thread in threads:
        thread.join(60)
    verdict = judge(rows, args.warmup)
    reconciled = reconcile(system, counts)
    (system.root / "series.json").write_text(json.dumps(rows, indent=1))
    plot(rows, args.warmup, system.root / "soak.png")
    print_table(rows, verdict, reconciled, counts)
    print(f"series: {system.root / 'series.json'}  plot: {system.root / 'soak.png'}")
    ok = all(v[0] for v in verdict.values()) and reconciled["exact"] and not counts.failures
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


LEVEL_MINUTES = 5  # a level is the median of this many minutes: a switch's peak is no trend


def judge(rows: list[dict], warmup: float) -> dict[str, tuple[bool, str]]:
    """Growth is the level of the last minutes against the level right after the warm-up
    (medians of LEVEL_MINUTES samples each), so a transient (a tuning switch's window, a
    burst of lag) is not read as a leak; the peaks are printed beside it."""
    after = [r for r in rows if r["minute"] >= warmup]
    verdict: dict[str, tuple[bool, str]] = {}
    growth, peaks, fds, threads = {}, {}, {}, {}
    for role in after[0]["processes"] if after else []:
        if role in ("bench", "broker"):  # the broker keeps every message in RAM, by design
            continue
        series = np.array([r["processes"][role] for r in after if role in r["processes"]])
        start = np.median(series[:LEVEL_MINUTES], axis=0)
        end = np.median(series[-LEVEL_MINUTES:], axis=0)
        growth[role] = end[0] / start[0] - 1 if start[0] else 0.0
        peaks[role] = series[:, 0].max() / start[0] - 1 if start[0] else 0.0
        fds[role], threads[role] = int(end[1] - start[1]), int(end[2] - start[2])
    worst = max(growth, key=lambda role: growth[role])
    peak = max(peaks, key=lambda role: peaks[role])
    verdict["RSS growth after warm-up <= 10%"] = (
        growth[worst] <= 0.10,
        f"largest {worst} {100 * growth[worst]:+.1f}% (level of the last {LEVEL_MINUTES} min "
        f"against the first {LEVEL_MINUTES} after warm-up); highest peak {peak} "
        f"{100 * peaks[peak]:+.1f}%",
    )
    verdict["descriptors flat (<= +5)"] = (
        max(fds.values()) <= 5,
        ", ".join(f"{r} {v:+d}" for r, v in fds.items() if v) or "all flat",
    )
    verdict["threads flat (<= +3)"] = (
        max(threads.values()) <= 3,
        ", ".join(f"{r} {v:+d}" for r, v in threads.items() if v) or "all flat",
    )
    first = [r["p99_ms"] for r in rows if r["minute"] <= 10]
    reference = float(np.nanmax(first)) if first else float("nan")
    worst_p99 = max(r["p99_ms"] for r in rows)
    verdict["p99 within 1.5x of the first 10 min"] = (
        worst_p99 <= 1.5 * reference,
        f"first 10 min max {reference:.1f} ms, worst {worst_p99:.1f} ms",
    )
    verdict["0 events dropped"] = (rows[-1]["dropped"] == 0, f"{rows[-1]['dropped']:.0f}")
    return verdict


def reconcile(system: System, counts: Counts) -> dict:
    """Wait for every window to close, then count each topic's distinct decisions."""
    deadline = time.monotonic() + 60 + 10 + 120
    while time.monotonic() < deadline:
        learner = scrape(system.metrics_port)
        if learner and sum(learner.get("artbandit_learner_open_decisions", {}).values()) == 0:
            break
        time.sleep(2)
    time.sleep(5)
    servers, kafka = system.broker.bootstrap_servers, KafkaConfig()

    logged = [
        hash(_ids.decode(v).decision_id) for v in read_topic(kafka, servers, kafka.topics.decisions)
    ]
    rewarded = [
        hash(_ids.decode(v).decision_id) for v in read_topic(kafka, servers, kafka.topics.rewarded)
    ]
    dead = sum(1 for _ in read_topic(kafka, servers, kafka.topics.deadletter))
    # the joins counter has one label, its outcome, which `scrape` keys the values by
    joins = scrape(system.metrics_port).get("artbandit_learner_joins_total", {})
    unseen = int(joins.get("not_impressed", 0))
    served, logged_ids, joined = distinct(counts.served), distinct(logged), distinct(rewarded)
    impressed = distinct(counts.impressed)
    exact = (
        len(served) == len(counts.served)
        and len(logged_ids) == len(logged)
        and np.array_equal(served, logged_ids)
        and np.array_equal(joined, impressed)
        and len(rewarded) == len(joined)
        and len(served) == len(joined) + unseen
    )
    return {"served": len(counts.served), "logged": len(logged), "joined": len(joined),
            "not impressed": unseen, "rewarded events": len(rewarded),
            "impressed by the clients": len(impressed), "dead letters": dead,
            "join outcomes": dict(joins), "exact": exact}  # fmt: skip


def print_table(rows: list[dict], verdict: dict, reconciled: dict, counts: Counts) -> None:
    roles = list(rows[0]["processes"])
    print("\nminute | pages | p99 ms | lag | " + " | ".join(f"{r} RSS/fds/thr" for r in roles))
    for row in rows:
        cells = [f"{row['processes'][r][0]:.0f}/{row['processes'][r][1]}/{row['processes'][r][2]}"
                 if r in row["processes"] else "-" for r in roles]  # fmt: skip
        print(
            f"{row['minute']} | {row['pages']} | {row['p99_ms']:.1f} | {row['lag']:.0f} | "
            + " | ".join(cells)
        )
    print("\ncondition | met | measured")
    for name, (met, detail) in verdict.items():
        print(f"{name} | {'yes' if met else 'NO'} | {detail}")
    print(
        f"reconciliation exact | {'yes' if reconciled['exact'] else 'NO'} | "
        + ", ".join(f"{k} {v}" for k, v in reconciled.items() if k != "exact")
    )
    print(
        f"client failures | {'yes' if not counts.failures else 'NO'} | {len(counts.failures)}"
        + (f" (first: {counts.failures[0]})" if counts.failures else "")
    )


def plot(rows: list[dict], warmup: float, path: Path) -> None:
    """Four panels: RSS (the broker, which keeps every message, on its own axis),
    descriptors, threads, and the decide p99 beside the learner's lag."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["minute"] for r in rows]
    figure, axes = plt.subplots(2, 2, figsize=(13, 8))
    series: dict[str, list[tuple[float, int, int]]] = defaultdict(list)
    for row in rows:
        for role, sample in row["processes"].items():
            series[role].append(sample)
    titles = [("RSS (MB); the broker on the right axis", "MB"), ("open descriptors", ""),
              ("threads", "")]  # fmt: skip
    palette = plt.get_cmap("tab20")
    colours = {role: palette(i % 20) for i, role in enumerate(series)}  # one per role
    for index, (title, unit) in enumerate(titles):
        ax = axes.flat[index]
        for role, samples in series.items():
            if index == 0 and role == "broker":
                continue
            values = [s[index] for s in samples]
            ax.plot(minutes[-len(samples) :], values, label=role, color=colours[role])
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.axvline(warmup, color="grey", linestyle=":")
    broker = series.get("broker", [])
    right = axes.flat[0].twinx()
    right.plot(minutes[-len(broker):], [s[0] for s in broker], color=colours.get("broker"),
               linestyle="--", label="broker (right)")  # fmt: skip
    right.set_ylabel("broker MB")
    for ax in axes.flat[1:3]:
        ax.legend(fontsize=6, ncol=2, loc="upper left")
    axes.flat[0].legend(fontsize=7, ncol=2, loc="upper left")
    right.legend(fontsize=7, loc="lower right")
    ax = axes.flat[3]
    ax.plot(minutes, [r["p99_ms"] for r in rows], color="tab:blue", label="decide p99 (ms)")
    ax.set_ylabel("p99 ms")
    ax.set_ylim(bottom=0)
    lag = ax.twinx()
    lag.plot(minutes, [r["lag"] for r in rows], color="tab:orange", label="learner lag")
    lag.set_ylabel("messages")
    ax.set_title("decide p99 (left) and learner lag (right)")
    ax.legend(fontsize=8, loc="upper left")
    lag.legend(fontsize=8, loc="upper right")
    for ax in axes.flat:
        ax.set_xlabel("minute")
    figure.tight_layout()
    figure.savefig(path, dpi=90)


if __name__ == "__main__":
    sys.exit(main())
