"""The one validated configuration object, with every default in one place.

`build_config` merges, in order: the built-in defaults (documented by configs/default.toml),
a config file's tables (read by the shell: storage.config_file, `--config` else
`$ARTBANDIT_CONFIG`), then `--set dotted.key=value` overrides. Everything is validated
strictly; a failure raises `ConfigError` naming the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from bandit.contracts.events import validation_path
from bandit.contracts.kafka import KafkaConfig, Name, Port, PositiveInt
from bandit.contracts.slots import (
    NonNegativeFloat,
    PositiveFloat,
    SlotConfig,
    SlotKind,
    StrictSection,
)
from bandit.policies import VWError, build_policy
from bandit.policies.probe import probe

# The keys self-tuning may set: how a slot learns and explores, never what it decides or
# how it is rewarded (see bandit.learning.tuning).
TUNABLE_PREFIXES = (
    "learning_rate", "interactions", "lrq", "vw_args", "exploration.", "importance_weight_cap",
)  # fmt: skip
# what a reward regression mirrors (the loss judge); the rest is judged by replaying policies
LOSS_JUDGES = ("learning_rate", "learning_rate_decay", "interactions", "lrq")


class ConfigError(ValueError):
    """A configuration that cannot run; `key` is the dotted key at fault, or the command-line
    option (`--out`), which is named as it is."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        where = key if key.startswith("--") else f"config {key}" if key else "config"
        super().__init__(f"{where}: {problem}")


def _default_slots() -> dict[str, SlotConfig]:
    return {kind.value: SlotConfig(kind=kind) for kind in SlotKind}


class ServingConfig(StrictSection, frozen=True):
    host: Name = "127.0.0.1"
    port: Port = 8080
    workers: Annotated[int, msgspec.Meta(ge=1, le=256)] = 2
    max_candidates: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 256
    max_slots: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64
    max_body_bytes: PositiveInt = 1_048_576
    # Salts for the user hash and the holdout; set your own secrets in production.
    user_hash_salt: Name = "artbandit-user"
    holdout_salt: Name = "artbandit-holdout"
    reload_interval_s: PositiveFloat = 5.0
    log_buffer_events: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 100_000
    # How long an event may wait for Kafka (a broker outage) before it is dropped.
    log_outage_s: Annotated[float, msgspec.Meta(ge=15.0, le=86_400.0)] = 120.0
    require_trained_policy: bool = False
    admin_token_env: Name = "ARTBANDIT_ADMIN_TOKEN"


class ModelStoreConfig(StrictSection, frozen=True):
    path: Name = "var/models"
    keep_versions: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 20


class LearnerConfig(StrictSection, frozen=True):
    """The streaming learner: one consumer-group member over decisions and feedback."""

    group_id: Name = "artbandit-learner"
    # This member's name: its checkpoints live in `<checkpoint_dir>/<member>/`. Members of
    # one group share `checkpoint_dir`, so a partition's open joins follow it on a rebalance.
    member: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,100}$")] = "learner"
    # The slots this group learns; empty: every slot. Groups that split the slots between
    # them each read every partition and pass over the decisions of the others' slots (one
    # VW model per slot, one owner: see docs/operations.md).
    slots: list[str] = msgspec.field(default_factory=list)
    checkpoint_dir: Name = "var/learner"
    # false: a join-only member. It joins and writes rewarded events and the lift sums but
    # learns no model; a rewarded learner per slot (`artbandit learn --from-rewarded`) learns
    # from all members' rewarded events, so the join scales out over k members while each
    # slot's model still sees all the traffic (docs/operations.md, "Scaling the learner").
    learns: bool = True
    checkpoint_interval_s: PositiveFloat = 10.0
    checkpoint_every_events: PositiveInt = 50_000
    keep_checkpoints: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3
    publish_interval_s: NonNegativeFloat = 30.0
    allowed_lateness_s: NonNegativeFloat = 60.0
    # When every input of a partition is read to its end, move its event time to the wall
    # clock so windows close on a quiet stream; off for replaying old logs deterministically.
    idle_advance: bool = True
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    partitions: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 4
    max_poll_records: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 5000
    metrics_host: Name = "127.0.0.1"
    metrics_port: Port = 9108
    # `artbandit learn`'s CPU niceness. Learning is background work: beside the service on
    # one host it yields the CPU to the requests and catches up after; on a host of its own
    # nothing competes, so it costs nothing there. 0 competes with the service as an equal.
    nice: Annotated[int, msgspec.Meta(ge=0, le=19)] = 10
    # The rolling window of decision time the calibration (off-policy vs holdout) and
    # guardrail metrics are computed over: long enough for control to have a few thousand
    # decisions.
    recent_window_s: PositiveFloat = 21_600.0


class TuningConfig(StrictSection, frozen=True):
    """Self-tuning (`artbandit tune`): which learning settings it tries, on how much of the
    log, and how sure it must be before a slot's learner switches."""

    # Each candidate changes one setting of what the slot runs now (TOML `key=value`). The
    # replay cannot see what exploring teaches, only what it costs, so the explorer's
    # settings are not among the defaults (it would always favour exploring less); the
    # weight cap and the interactions without the id crosses are.
    candidates: list[Annotated[str, msgspec.Meta(min_length=3, max_length=500)]] = msgspec.field(
        default_factory=lambda: [
            "learning_rate=0.03",
            "learning_rate=0.3",
            "learning_rate=1.0",
            'interactions=["UA", "CA"]',
            "importance_weight_cap=1.0",
            "importance_weight_cap=10.0",
        ]
    )
    # The slot's most recent treatment events the candidates are replayed on; a switch
    # warm-starts the new settings on the same events.
    window_events: Annotated[int, msgspec.Meta(ge=100, le=500_000)] = 50_000
    min_events: Annotated[int, msgspec.Meta(ge=100, le=500_000)] = 5_000
    # How settings are judged. "loss": how well each learns the rewards of what was shown
    # (progressive squared error of a reward regression with its learning rate, decay,
    # interactions and weight cap; no counterfactual needed; learning settings only). The
    # off-policy values of the policies themselves: "dr", "switch-dr" (the reward model
    # alone on rounds weighted over 20: biased as far as that model is wrong) or "snips",
    # which the exploration floor gives support. "auto": the loss for candidates that
    # change only what it judges, "snips" for the others (weight caps, explorers).
    estimator: Literal["auto", "loss", "dr", "switch-dr", "snips"] = "auto"
    # One-sided confidence of the gain's lower bound, across all candidates (Bonferroni).
    confidence: Annotated[float, msgspec.Meta(ge=0.5, le=0.9999)] = 0.95
    # The estimated gain must also reach this share of what the running settings achieve:
    # for the loss, of the loss they remove below a constant predictor's (most of a
    # low-click slot's loss is click noise no setting can remove); for a value, of it.
    min_gain: Annotated[float, msgspec.Meta(ge=0.0, le=10.0)] = 0.03
    # Rounds in a row a candidate must win before the slot switches to it.
    confirmations: Annotated[int, msgspec.Meta(ge=1, le=100)] = 2
    interval_s: PositiveFloat = 3600.0  # `artbandit tune --every` by default


class Config(StrictSection, frozen=True):
    """The whole configuration of an artbandit process."""

    slots: dict[str, SlotConfig] = msgspec.field(default_factory=_default_slots)
    kafka: KafkaConfig = msgspec.field(default_factory=KafkaConfig)
    serving: ServingConfig = msgspec.field(default_factory=ServingConfig)
    model_store: ModelStoreConfig = msgspec.field(default_factory=ModelStoreConfig)
    learner: LearnerConfig = msgspec.field(default_factory=LearnerConfig)
    tuning: TuningConfig = msgspec.field(default_factory=TuningConfig)

    @property
    def learned_slots(self) -> list[str]:
        """The slots this learner owns, in config order."""
        owned = self.learner.slots
        return [name for name in self.slots if not owned or name in owned]

    @property
    def reports_unowned(self) -> bool:
        """Whether this learner dead-letters input that belongs to no slot: the owner of the
        first configured slot does, so each bad message is reported once across groups."""
        return next(iter(self.slots)) in self.learned_slots


def resolve_bootstrap(config: Config) -> str:
    """The Kafka address to connect to: `embedded` means the embedded broker's port on
    loopback (started elsewhere, e.g. by `artbandit serve` or `artbandit broker`)."""
    servers = config.kafka.bootstrap_servers
    return f"127.0.0.1:{config.kafka.embedded_port}" if servers == "embedded" else servers


def build_config(
    settings: Mapping[str, Any] | None = None, overrides: Iterable[str] = ()
) -> Config:
    """The validated config: the defaults, then `settings` (a config file's tables, as
    read by the shell that found it), then each `dotted.key=value` override."""
    raw = msgspec.to_builtins(Config())
    if settings is not None:
        deep_merge(raw, settings, prefix="")
    for override in overrides:
        key, value = parse_override(override)
        deep_merge(raw, nest(key, value), prefix="")
    return config_from_dict(raw)


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Validate a plain dict (already merged with defaults) into a `Config`."""
    raw = dict(raw)
    slots_raw = raw.pop("slots", {})
    if not isinstance(slots_raw, Mapping):
        raise ConfigError("slots", "must be a table of slot names")
    if not slots_raw:
        raise ConfigError("slots", "at least one slot is required")
    slots = {}
    for name, slot_raw in slots_raw.items():
        if not isinstance(name, str) or not name or len(name) > 100:
            raise ConfigError(f"slots.{name}", "slot names are 1-100 characters")
        slots[name] = validated(slot_raw, SlotConfig, prefix=f"slots.{name}")
        _check_vw(name, slots[name])
        if shadow_slot(name, slots[name]) is not None and shadow_key(name) in slots_raw:
            raise ConfigError(f"slots.{name}.shadow", f"{shadow_key(name)} is a slot already")
    rest = validated(raw, Config, prefix="")
    unknown = [name for name in rest.learner.slots if name not in slots]
    if unknown:
        known = ", ".join(slots)
        raise ConfigError("learner.slots", f"unknown slot {unknown[0]!r} (configured: {known})")
    _check_candidates(rest.tuning.candidates, rest.tuning.estimator, slots)
    return msgspec.structs.replace(rest, slots=slots)


def _check_candidates(
    candidates: list[str], estimator: str, slots: Mapping[str, SlotConfig]
) -> None:
    """Every tuning candidate must set a tunable key to a value each VW slot accepts (and
    one the estimator can judge)."""
    for index, candidate in enumerate(candidates):
        key = f"tuning.candidates[{index}]"
        try:
            name = tunable_key(candidate)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
        if estimator == "loss" and name not in LOSS_JUDGES:
            raise ConfigError(key, f"{candidate!r}: tuning.estimator \"loss\" judges only "
                              f"{', '.join(LOSS_JUDGES)}; use an off-policy estimator")  # fmt: skip
        for slot_name, slot in slots.items():
            if slot.policy == "vw":
                try:
                    override_slot(slot_name, slot, [candidate])
                except ConfigError as exc:
                    raise ConfigError(key, f"{candidate!r}: {exc}") from None


def tunable_key(override: str) -> str:
    """The key of a `key=value` override that self-tuning may set; `ValueError` otherwise."""
    key, _ = parse_override(override)
    if not key.startswith(TUNABLE_PREFIXES):
        allowed = ", ".join(TUNABLE_PREFIXES)
        raise ValueError(f"{override!r}: tuning may set only keys starting {allowed}")
    return key


def override_slot(name: str, slot: SlotConfig, overrides: Iterable[str]) -> SlotConfig:
    """`slot` with `key=value` overrides of its own keys (`exploration.epsilon=0.1`),
    validated like a config file; errors name `slots.<name>.<key>`."""
    raw = msgspec.to_builtins(slot)
    for override in overrides:
        key, value = parse_override(override)
        deep_merge(raw, nest(key, value), prefix=f"slots.{name}.")
    updated = validated(raw, SlotConfig, prefix=f"slots.{name}")
    _check_vw(name, updated)
    return updated


SHADOW = "shadow"  # the pin that serves a slot's shadow, and the prefix of its versions


def shadow_key(slot: str) -> str:
    """Where a slot's shadow lives beside it (model store, learner, serving registry)."""
    return f"{slot}.{SHADOW}"


def shadow_slot(name: str, slot: SlotConfig) -> SlotConfig | None:
    """The settings of `slot`'s shadow policy (None without one); errors name the key."""
    if slot.shadow is None:
        return None
    for override in slot.shadow.settings:
        try:
            tunable_key(override)
        except ValueError as exc:
            raise ConfigError(f"slots.{name}.shadow.settings", str(exc)) from None
    base = msgspec.structs.replace(slot, policy=slot.shadow.policy or slot.policy, shadow=None)
    return override_slot(name, base, slot.shadow.settings)


def policy_slots(config: Config, names: Iterable[str] | None = None) -> dict[str, SlotConfig]:
    """Every policy a set of slots runs (default: all), by key: each slot's own, then its
    shadow's under `shadow_key`."""
    out: dict[str, SlotConfig] = {}
    for name in config.slots if names is None else names:
        out[name] = config.slots[name]
        shadow = shadow_slot(name, config.slots[name])
        if shadow is not None:
            out[shadow_key(name)] = shadow
    return out


def _check_vw(name: str, slot: SlotConfig) -> None:
    """Let VW itself judge the arguments, and the policy decide and learn once, so a typo or
    a learner of the wrong kind fails at load, not at the first request."""
    if slot.policy != "vw":
        return
    key = f"slots.{name}.vw_args" if slot.vw_args else f"slots.{name}"
    try:
        policy = build_policy(slot)
    except VWError as exc:
        raise ConfigError(key, str(exc)) from None
    try:
        probe(policy)
    except Exception as exc:  # VW's errors vary: RuntimeError, ValueError, its own
        raise ConfigError(
            key, f"VW builds, but cannot decide and learn for a slot of kind {slot.kind}: {exc}"
        ) from None
    finally:
        policy.close()


def parse_override(text: str) -> tuple[str, Any]:
    """Split `dotted.key=value`; the value is read as a TOML value, else kept as a string.

    >>> parse_override("serving.port=8081")
    ('serving.port', 8081)
    >>> parse_override("kafka.bootstrap_servers=127.0.0.1:9092")
    ('kafka.bootstrap_servers', '127.0.0.1:9092')
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(key, f"override {text!r} is not of the form dotted.key=value")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key, parsed


def nest(dotted: str, value: Any) -> dict[str, Any]:
    node: dict[str, Any] = {}
    inner: Any = value
    for part in reversed(dotted.split(".")):
        node = {part: inner}
        inner = node
    return node


def deep_merge(base: dict[str, Any], update: Mapping[str, Any], prefix: str) -> None:
    for key, value in update.items():
        here = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_merge(base[key], value, prefix=f"{here}.")
        elif isinstance(base.get(key), dict) and not isinstance(value, Mapping):
            raise ConfigError(here, f"is a table, got {type(value).__name__}")
        else:
            base[key] = value


T = TypeVar("T")


def validated(raw: Any, type_: type[T], prefix: str) -> T:
    try:
        return msgspec.convert(raw, type_, strict=True)
    except msgspec.ValidationError as exc:
        path, message, problem = validation_path(exc)
        if problem is not None:
            message = "unknown key" if problem == "unknown" else "missing required key"
        raise ConfigError(".".join(p for p in (prefix, path) if p), message) from None
