"""Slow clients against the decision service, with and without the shipped nginx front.

50 slowloris connections (a request's headers, one byte every 0.5 s) hold the service while
one client sends normal decide requests for 15 s; prints how many failed and their p50/p99,
straight to gunicorn (2 sync workers) and through configs/nginx/nginx.conf. Needs nginx
(Debian package nginx-light).

    python benchmarks/front_bench.py
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from kafkaio.embedded_broker import free_port

REPO = Path(__file__).resolve().parents[1]
ARTBANDIT = str(Path(sys.executable).with_name("artbandit"))
PAGE = json.dumps(
    {"user": {"id": "u"}, "slots": [{"slot": "hero", "candidates": [{"id": "a"}, {"id": "b"}]}]}
).encode()
SLOW_CLIENTS, SECONDS, TIMEOUT_S = 50, 15.0, 5.0


def request(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        connection.request("POST", "/v1/decide", PAGE, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        connection.close()


def slow_client(port: int, stop: threading.Event) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            connection.sendall(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\n")
            while not stop.wait(0.5):
                connection.sendall(b"X")
    except OSError:
        return


def under_slowloris(port: int, seconds: float = SECONDS) -> tuple[int, int, float, float]:
    """(requests, failed, p50 ms, p99 ms) of normal requests while slow clients hold on
    (tests/serving/test_front.py runs it too)."""
    stop = threading.Event()
    for _ in range(SLOW_CLIENTS):
        threading.Thread(target=slow_client, args=(port, stop), daemon=True).start()
    time.sleep(1.0)
    latencies, failed = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        failed += not request(port)
        latencies.append(time.perf_counter() - started)
        time.sleep(0.02)
    stop.set()
    time.sleep(1.0)
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return len(latencies), failed, float(p50), float(p99)


@contextlib.contextmanager
def running_front(root: Path, nginx: str) -> Iterator[tuple[int, int]]:
    """`artbandit serve` (2 sync workers) behind configs/nginx/nginx.conf as shipped, but for
    its two addresses; yields (service port, front port) once both answer a decide."""
    shipped = (REPO / "configs/nginx/nginx.conf").read_text()
    if "listen 8000;" not in shipped or "server 127.0.0.1:8080;" not in shipped:
        raise RuntimeError("configs/nginx/nginx.conf no longer has the addresses to replace")
    service_port, broker_port, front_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("ARTBANDIT_CONFIG", "PROMETHEUS_MULTIPROC_DIR")}  # fmt: skip
    service = subprocess.Popen(
        [ARTBANDIT, "serve", "--set", f"serving.port={service_port}", "--set", "serving.workers=2",
         "--set", f"kafka.embedded_port={broker_port}", "--set", f'model_store.path="{root}/m"'],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    conf = shipped.replace("listen 8000;", f"listen 127.0.0.1:{front_port};")
    (root / "nginx.conf").write_text(
        conf.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{service_port};")
    )
    (root / "tmp").mkdir(exist_ok=True)
    front = subprocess.Popen([nginx, "-p", str(root), "-c", str(root / "nginx.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (request(service_port) and request(front_port)):
            if time.monotonic() > deadline:
                raise RuntimeError("the service or the front did not start within 60 s")
            time.sleep(0.5)
        yield service_port, front_port
    finally:
        for process in (front, service):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            finally:
                process.kill()


def main() -> int:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        print("needs nginx: apt-get install nginx-light", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="artbandit-front-"))
    try:
        with running_front(root, nginx) as (service_port, front_port):
            print(f"{SLOW_CLIENTS} slowloris connections, normal decides for {SECONDS:.0f} s:")
            for name, port in [("gunicorn directly", service_port), ("through nginx", front_port)]:
                count, failed, p50, p99 = under_slowloris(port)
                print(f"  {name:<18} {count:>5} requests, {failed:>4} failed, "
                      f"p50 {p50:7.1f} ms, p99 {p99:7.1f} ms")  # fmt: skip
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
