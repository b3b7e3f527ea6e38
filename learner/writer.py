"""The learner's outputs, produced to Kafka by a child process.

kafka-python spends tens of microseconds of Python on every message it produces, and its IO
thread competes with the learner for the GIL. In a child process that work runs on another
core. The learner hands over encoded messages in batches through a pipe; the pipe's buffer
bounds how far the child may fall behind. Before each checkpoint the learner asks the child
to flush. The child replies only once Kafka acknowledged every message sent before the
request, or with the first error, so the checkpoint protocol is unchanged.

The child ignores SIGINT and SIGTERM (the learner shuts it down after its final checkpoint)
and exits by itself when the learner's end of the pipe closes, even after a SIGKILL.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

# (topic, key, value, partition or None for the key's hash)
Message = tuple[str, bytes | None, bytes, int | None]

SHIP_EVERY = 1000  # messages per pipe write: small enough to overlap, large enough to amortise
START_TIMEOUT_S = 60.0


class OutputError(RuntimeError):
    """The outputs may not all be in Kafka: the learner must restart from its checkpoint."""


class OutputWriter:
    """Produces messages from a child process; `flush` confirms every one sent so far."""

    def __init__(self, settings: dict[str, Any]):
        """`settings`: the producer's kafka-python arguments (kafkaio.clients), handed over
        the pipe, never the command line, since they may hold a SASL password."""
        # A fresh interpreter (no fork of a process with threads, no re-import of the
        # caller's __main__), talking over a socket pair with multiprocessing's framing.
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(theirs.fileno())], pass_fds=[theirs.fileno()]
        )
        theirs.close()
        self._conn = Connection(ours.detach())
        self._pending: list[Message] = []
        self._request(("start", settings))
        self._reply(START_TIMEOUT_S, "start")

    def send(
        self, topic: str, key: bytes | None, value: bytes, partition: int | None = None
    ) -> None:
        """Queue one message. With `partition` the message goes to that partition when the
        topic has it (co-partitioned outputs), else to its key's partition."""
        self._pending.append((topic, key, value, partition))
        if len(self._pending) >= SHIP_EVERY:
            self.ship()

    def ship(self) -> None:
        """Hand the queued messages to the child (blocks while the child is a pipe behind)."""
        if self._pending:
            self._request(("send", self._pending))
            self._pending = []

    def flush(self, timeout_s: float = 60.0) -> None:
        """Return once Kafka acknowledged every message sent so far; else `OutputError`."""
        self.ship()
        self._request(("flush", timeout_s))
        self._reply(timeout_s + 5, "flush")

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what the child holds, stop it. Messages not shipped yet are dropped: the
        learner only closes after its final checkpoint, or when it must restart anyway."""
        with contextlib.suppress(OSError):  # already gone
            self._conn.send(("close", timeout_s))
        try:
            self._process.wait(timeout_s + 5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._conn.close()

    def _request(self, request: tuple[Any, ...]) -> None:
        try:
            self._conn.send(request)
        except OSError as exc:
            raise OutputError(f"the output writer process is gone: {exc}") from exc

    def _reply(self, timeout_s: float, what: str) -> None:
        try:
            if not self._conn.poll(timeout_s):
                raise OutputError(f"the output writer did not answer a {what} in {timeout_s} s")
            error = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise OutputError(f"the output writer process is gone during a {what}") from exc
        if error is not None:
            raise OutputError(error)


def _serve(conn: Connection) -> None:
    """The child: produce what arrives, answer flushes; every error is sticky."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        _, settings = conn.recv()
        producer = KafkaProducer(**settings)
    except (EOFError, OSError):
        return  # the learner is gone before it started us
    except KafkaError as exc:
        conn.send(f"cannot connect to Kafka at {settings['bootstrap_servers']}: {exc}")
        return
    conn.send(None)
    errors: list[BaseException] = []
    partitions: dict[str, int] = {}
    timeout_s = 10.0
    while True:
        try:
            kind, body = conn.recv()
        except (EOFError, OSError):
            break  # the learner is gone; whatever it had not checkpointed it will produce again
        if kind == "send":
            for topic, key, value, partition in body:
                if partition is not None:
                    if topic not in partitions:
                        partitions[topic] = len(producer.partitions_for(topic) or ())
                    if partition >= partitions[topic]:
                        partition = None
                future = producer.send(topic, value=value, key=key, partition=partition)
                future.add_errback(errors.append)
        elif kind == "flush":
            try:
                producer.flush(timeout=body)
            except KafkaError as exc:
                errors.append(exc)
            conn.send(f"Kafka refused an output: {errors[0]}" if errors else None)
        else:  # close
            timeout_s = body
            break
    producer.close(timeout=timeout_s)


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
