"""Decision service throughput and latency under load from a second process on loopback.

Starts `artbandit serve` (gunicorn, `serving.workers` sync workers, default 2) with the
embedded broker, so every decision is really logged to Kafka (through the host's shipper),
and drives it with wrk:

  (a) one artwork slot with 10 candidates, 16 connections
  (b) a full page: 40 artwork slots of 4 variants, one hero of 10, rows ordering 10 of 20,
      at 2 and at 16 connections

In the same run, (a) against the floor: a bare Flask + gunicorn app with as many sync
workers doing one VW predict over the same request (benchmarks/bare_app.py), no logging.
Targets on 2 cores: (a) >= 0.8 of the bare app's requests/s with p99 <= 10 ms; (b) p99 <=
15 ms at 2 connections. Needs wrk (Debian: apt-get install wrk).
Run: python benchmarks/serving_bench.py [--seconds S]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kafkaio.embedded_broker import free_port

ARTBANDIT = str(Path(sys.executable).with_name("artbandit"))
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
ROOT = Path(__file__).resolve().parent.parent


def one_artwork_slot() -> dict:
    return {
        "user": {"id": "user-1", "features": {"taste": "romance", "country": "DE"}},
        "context": {"device": "tv", "hour": 21},
        "slots": [{"slot": "artwork", "key": "title:1",
                   "candidates": [{"id": f"art{i}", "features": {"tone": f"t{i % 4}"}} for i in range(10)]}],
    }  # fmt: skip


def full_page() -> dict:
    artwork = [
        {"slot": "artwork", "key": f"title:{t}",
         "candidates": [{"id": f"t{t}-a{a}", "features": {"tone": f"t{a}"}} for a in range(4)]}
        for t in range(40)
    ]  # fmt: skip
    hero = {"slot": "hero", "key": "hero",
            "candidates": [{"id": f"hero{h}", "features": {"genre": f"g{h % 5}"}} for h in range(10)]}  # fmt: skip
    rows = {"slot": "rows", "key": "home", "select": 10,
            "candidates": [{"id": f"row{r}", "features": {"genre": f"g{r % 5}"}} for r in range(20)]}  # fmt: skip
    return {"user": {"id": "user-1", "features": {"taste": "action"}}, "context": {"device": "web"},
            "slots": [*artwork, hero, rows]}  # fmt: skip


def ready(port: int, path: str = "/readyz") -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        if path == "/readyz":
            connection.request("GET", path)
        else:
            connection.request("POST", path, body=json.dumps(one_artwork_slot()))
        return connection.getresponse().status == 200
    except OSError:
        return False


def wait_ready(port: int, process: subprocess.Popen, path: str = "/readyz") -> bool:
    deadline = time.monotonic() + 60
    while not ready(port, path):
        if time.monotonic() > deadline or process.poll() is not None:
            return False
        time.sleep(0.2)
    return True


def metric(exposition: str, name: str) -> float:
    return sum(
        float(line.rpartition(" ")[2])
        for line in exposition.splitlines()
        if line.startswith((name + "{", name + " "))
    )


def logged_line(port: int) -> str:
    """Every decision served, and what became of its event, once the shipper has drained."""
    deadline = time.monotonic() + 30
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/metrics")
        exposition = connection.getresponse().read().decode()
        served = metric(exposition, "artbandit_decisions_total")
        sent = metric(exposition, "artbandit_events_sent_total")
        dropped = metric(exposition, "artbandit_events_dropped_total")
        if sent + dropped >= served or time.monotonic() > deadline:
            return f"decisions served {served:,.0f}: logged to Kafka {sent:,.0f}, dropped {dropped:,.0f}"
        time.sleep(0.5)


def bare(workers: int, seconds: float, workdir: str) -> dict[str, float]:
    """Case (a) against the bare app, alone on the machine (the service is paused)."""
    port = free_port()
    app = subprocess.Popen(
        [GUNICORN, "-w", str(workers), "-k", "sync", "-b", f"127.0.0.1:{port}", "benchmarks.bare_app:app"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        if not wait_ready(port, app, "/v1/decide"):
            raise SystemExit("the bare app did not start")
        wrk(port, one_artwork_slot(), 16, 2, workdir)  # warm up
        return wrk(port, one_artwork_slot(), 16, seconds, workdir)
    finally:
        app.send_signal(signal.SIGTERM)
        app.wait(30)


def wrk(port: int, body: dict, connections: int, seconds: float, workdir: str) -> dict[str, float]:
    script = Path(workdir) / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
    )
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{round(seconds)}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}/v1/decide"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": socket_errors.group(1) if socket_errors else "none",
    }


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    port, broker_port = free_port(), free_port()
    workdir = tempfile.mkdtemp(prefix="artbandit-bench-")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    server = subprocess.Popen(
        [ARTBANDIT, "serve", "--set", f"serving.port={port}", "--set", f"serving.workers={args.workers}",
         "--set", f"kafka.embedded_port={broker_port}", "--set", f'model_store.path="{workdir}/models"'],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        if not wait_ready(port, server):
            print("the server did not become ready", file=sys.stderr)
            return 1
        wrk(port, full_page(), 2, 2, workdir)  # warm up workers and the broker's topics
        cases = [("(a) 1 artwork slot x 10 candidates", one_artwork_slot(), 16),
                 ("(b) full page: 40x4 artwork, hero 10, rows 10 of 20", full_page(), 2),
                 ("(b) full page: 40x4 artwork, hero 10, rows 10 of 20", full_page(), 16)]  # fmt: skip
        print(
            f"{args.workers} gunicorn sync workers, decisions logged to the embedded broker, wrk {args.seconds:.0f}s each"
        )
        print(f"{'case':<54}{'conns':>6}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'non-2xx':>8}")
        results = []
        for name, body, connections in cases:
            r = wrk(port, body, connections, args.seconds, workdir)
            results.append(r)
            print(f"{name:<54}{connections:>6}{r['rps']:>9,.0f}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}"
                  f"{r['non_2xx']:>8.0f}  socket errors: {r['socket_errors']}", flush=True)  # fmt: skip
        print(logged_line(port), flush=True)
        # The service idles (its broker and shipper too) while the bare app is measured.
        floor = bare(args.workers, args.seconds, workdir)
        name = "(a) bare Flask + gunicorn + VW, no logging"
        print(f"{name:<54}{16:>6}{floor['rps']:>9,.0f}{floor['p50_ms']:>8.2f}{floor['p99_ms']:>8.2f}"
              f"{floor['non_2xx']:>8.0f}  socket errors: {floor['socket_errors']}")  # fmt: skip
        print(
            f"ratio artbandit / bare (a): {results[0]['rps'] / floor['rps']:.2f}  (target >= 0.8)"
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
