"""Every Kafka client artbandit makes comes from here.

A client's settings are merged in one order: the role's defaults below (each says why), the
call's own values (a group id, a timeout derived from the config), the config's per-kind
overrides (`[kafka.producer]`, `[kafka.consumer]`, `[kafka.admin]`), then the connection
and security settings of `[kafka]`. Secrets are read here, when a client is built, from
the environment variable or file the config names; they are never logged, and an error
names where a secret was looked for, never its value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import msgspec
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from bandit.contracts.kafka import KafkaConfig

Role = Literal[
    "event_producer",  # serving's decision and feedback log
    "output_producer",  # the learner's rewarded events, dead letters and models
    "tool_producer",  # the CLI's and simulator's producers (train, simulate, produce)
    "learner_consumer",  # the learner's group member
    "reader",  # reading a topic to its end (replay, warm starts)
    "model_feed",  # serving following the models topic
    "admin",  # creating topics
    "probe",  # asking whether a broker answers
]

_MB = 1 << 20
_DEFAULTS: dict[Role, dict[str, Any]] = {
    "event_producer": {
        "acks": 1,
        "enable_idempotence": False,  # acks=1: low latency over exactly-once logging
        "linger_ms": 20,  # fewer, larger produce requests: less CPU here and in Kafka
        "batch_size": 256 * 1024,
        "max_block_ms": 2000,  # blocks only the shipping thread; the buffer absorbs it
        "request_timeout_ms": 10_000,
        "reconnect_backoff_max_ms": 2000,
    },
    "output_producer": {
        "acks": "all",  # a checkpoint may only follow outputs Kafka will keep
        "linger_ms": 50,
        "batch_size": _MB,
        "max_request_size": 64 * _MB,  # a policy version is one message
    },
    "tool_producer": {"linger_ms": 20, "batch_size": _MB, "max_request_size": 64 * _MB},
    "learner_consumer": {
        "enable_auto_commit": False,  # the checkpoint, not Kafka, says what was read
        # short enough for a group to form in seconds (the embedded broker does not assign
        # with the default 300 s) and to notice a member gone
        "max_poll_interval_ms": 30_000,
        "session_timeout_ms": 6_000,
        "heartbeat_interval_ms": 1_000,
        "check_crcs": False,
        "fetch_max_bytes": 64 * _MB,
        "max_partition_fetch_bytes": 8 * _MB,
    },
    "reader": {
        "enable_auto_commit": False,
        "check_crcs": False,
        "fetch_max_bytes": 64 * _MB,
        "max_partition_fetch_bytes": 8 * _MB,
    },
    "model_feed": {
        "enable_auto_commit": False,
        "fetch_max_bytes": 64 * _MB,
        "max_partition_fetch_bytes": 64 * _MB,  # a policy version is one message
    },
    "admin": {},
    "probe": {"request_timeout_ms": 2000},
}
_KIND: dict[Role, Literal["producer", "consumer", "admin"]] = {
    "event_producer": "producer",
    "output_producer": "producer",
    "tool_producer": "producer",
    "learner_consumer": "consumer",
    "reader": "consumer",
    "model_feed": "consumer",
    "admin": "admin",
    "probe": "consumer",
}


class KafkaSettingsError(ValueError):
    """A client cannot be built as configured (a secret missing); the message says where it
    was looked for."""


def client_settings(
    kafka: KafkaConfig, role: Role, bootstrap_servers: str | None = None, **call: Any
) -> dict[str, Any]:
    """The kafka-python keyword arguments of a client in `role` (see the module docstring
    for the order); `bootstrap_servers` replaces the config's (e.g. the embedded broker's
    resolved address)."""
    kind = _KIND[role]
    section = {"producer": kafka.producer, "consumer": kafka.consumer, "admin": kafka.admin}[kind]
    overrides = {k: v for k, v in msgspec.structs.asdict(section).items() if v is not None}
    settings: dict[str, Any] = {"client_id": kafka.client_id, **_DEFAULTS[role], **call}
    settings.update(overrides)
    settings["bootstrap_servers"] = bootstrap_servers or kafka.bootstrap_servers
    settings.update(security_settings(kafka))
    return settings


def security_settings(kafka: KafkaConfig) -> dict[str, Any]:
    """TLS and SASL arguments for kafka-python, the password read now."""
    settings: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if kafka.security_protocol.endswith("SSL"):
        settings["ssl_check_hostname"] = kafka.ssl_check_hostname
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(kafka, name)
            if path is not None:
                if not Path(path).is_file():
                    raise KafkaSettingsError(f"kafka.{name}: no such file {path}")
                settings[name] = path
    if kafka.security_protocol.startswith("SASL"):
        settings["sasl_mechanism"] = kafka.sasl_mechanism
        settings["sasl_plain_username"] = kafka.sasl_username
        settings["sasl_plain_password"] = _password(kafka)
    return settings


def _password(kafka: KafkaConfig) -> str:
    if kafka.sasl_password_env is not None:
        value = os.environ.get(kafka.sasl_password_env)
        if not value:
            raise KafkaSettingsError(
                f"kafka.sasl_password_env: the environment variable {kafka.sasl_password_env} "
                "is not set"
            )
        return value
    path = Path(kafka.sasl_password_file or "")
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise KafkaSettingsError(
            f"kafka.sasl_password_file: cannot read {path} ({exc.strerror})"
        ) from None
    if not value:
        raise KafkaSettingsError(f"kafka.sasl_password_file: {path} is empty")
    return value


def producer(
    kafka: KafkaConfig, role: Role, bootstrap_servers: str | None = None, **call: Any
) -> KafkaProducer:
    return KafkaProducer(**client_settings(kafka, role, bootstrap_servers, **call))


def consumer(
    kafka: KafkaConfig, role: Role, *topics: str, bootstrap_servers: str | None = None,
    **call: Any,
) -> KafkaConsumer:  # fmt: skip
    return KafkaConsumer(*topics, **client_settings(kafka, role, bootstrap_servers, **call))


def poll(consumer: KafkaConsumer, timeout_ms: int) -> dict[Any, list[Any]]:
    """`consumer.poll`, working around a kafka-python 3.0 bug that pausing hits.

    Since kafka-python keeps the records it fetched for a partition that is then paused
    (its port of KAFKA-7548), `resume` hands them back only when no record set is left in
    line; a drained one left there (a poll that ended on its last record) keeps them parked,
    and a parked partition is never fetched again: with every input paused or parked, the
    consumer stops. A drained record set holds nothing, so it is dropped before each poll.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    in_line = getattr(fetcher, "_next_partition_records", None)
    if in_line is not None and not in_line:
        fetcher._next_partition_records = None  # type: ignore[union-attr]
    batch: dict[Any, list[Any]] = consumer.poll(timeout_ms=timeout_ms)
    return batch


def admin(kafka: KafkaConfig, bootstrap_servers: str | None = None) -> KafkaAdminClient:
    return KafkaAdminClient(**client_settings(kafka, "admin", bootstrap_servers))
