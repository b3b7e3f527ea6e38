"""The Kafka side of the config: topic names, and the settings of every client (admin,
producers, consumers) with TLS and SASL, validated strictly like the rest (`kafka.*`)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from bandit.contracts.slots import StrictSection

PositiveInt = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class KafkaTopics(StrictSection, frozen=True):
    decisions: Name = "artbandit.decisions"
    feedback: Name = "artbandit.feedback"
    rewarded: Name = "artbandit.rewarded"
    models: Name = "artbandit.models"
    deadletter: Name = "artbandit.deadletter"


Millis = Annotated[int, msgspec.Meta(ge=0, le=86_400_000)]
Bytes = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class KafkaAdminSettings(StrictSection, frozen=True):
    """Overrides of the admin client's settings (kafka-python names); unset keeps the
    role's default (kafkaio.clients). Producers and consumers take these too."""

    request_timeout_ms: Millis | None = None
    reconnect_backoff_max_ms: Millis | None = None
    connections_max_idle_ms: Millis | None = None


class _KafkaDataSettings(KafkaAdminSettings, frozen=True):
    """What producers and consumers take beyond the admin client's settings."""

    metadata_max_age_ms: Millis | None = None


class KafkaProducerSettings(_KafkaDataSettings, frozen=True):
    """Per-role overrides of every producer's settings (kafka-python names)."""

    acks: Literal[0, 1, "all"] | None = None
    linger_ms: Millis | None = None
    batch_size: Bytes | None = None
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None
    max_request_size: Bytes | None = None
    delivery_timeout_ms: Millis | None = None
    max_block_ms: Millis | None = None
    retries: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] | None = None


class KafkaConsumerSettings(_KafkaDataSettings, frozen=True):
    """Per-role overrides of every consumer's settings (kafka-python names)."""

    fetch_min_bytes: Bytes | None = None
    fetch_max_wait_ms: Millis | None = None
    fetch_max_bytes: Bytes | None = None
    max_partition_fetch_bytes: Bytes | None = None
    session_timeout_ms: Millis | None = None
    heartbeat_interval_ms: Millis | None = None
    max_poll_interval_ms: Millis | None = None
    check_crcs: bool | None = None


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaConfig(StrictSection, frozen=True):
    """`bootstrap_servers = "embedded"` runs the embedded broker on `embedded_port`.

    Every Kafka client is built from this section (kafkaio.clients). Secrets never sit in
    the config: the SASL password is read, when a client is built, from the environment
    variable `sasl_password_env` names or the file `sasl_password_file` names."""

    bootstrap_servers: Name = "embedded"
    embedded_port: Port = 19092
    client_id: Name = "artbandit"
    topics: KafkaTopics = msgspec.field(default_factory=KafkaTopics)
    security_protocol: SecurityProtocol = "PLAINTEXT"
    ssl_cafile: Name | None = None  # PEM CA bundle (default: the system's CAs)
    ssl_certfile: Name | None = None  # client certificate (mutual TLS)
    ssl_keyfile: Name | None = None
    ssl_check_hostname: bool = True
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: Name | None = None
    sasl_password_env: Name | None = None
    sasl_password_file: Name | None = None
    producer: KafkaProducerSettings = msgspec.field(default_factory=KafkaProducerSettings)
    consumer: KafkaConsumerSettings = msgspec.field(default_factory=KafkaConsumerSettings)
    admin: KafkaAdminSettings = msgspec.field(default_factory=KafkaAdminSettings)

    def __post_init__(self) -> None:
        sasl = self.security_protocol.startswith("SASL")
        tls = self.security_protocol.endswith("SSL")
        if sasl:
            if self.sasl_mechanism is None or self.sasl_username is None:
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs sasl_mechanism and "
                    "sasl_username"
                )
            if (self.sasl_password_env is None) == (self.sasl_password_file is None):
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs exactly one of "
                    "sasl_password_env and sasl_password_file"
                )
        elif any(
            v is not None
            for v in (
                self.sasl_mechanism,
                self.sasl_username,
                self.sasl_password_env,
                self.sasl_password_file,
            )
        ):
            raise ValueError(f"sasl_* settings need a SASL security_protocol, not "
                             f"{self.security_protocol}")  # fmt: skip
        if not tls and any(
            v is not None for v in (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        ):
            raise ValueError(f"ssl_* files need security_protocol SSL or SASL_SSL, not "
                             f"{self.security_protocol}")  # fmt: skip
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together (mutual TLS)")
