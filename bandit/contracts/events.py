"""The event contracts of docs/design.md, decoded once at the edge, strictly.

Every event is a frozen msgspec Struct tagged by its `schema` field. `decode` and `encode`
both validate: unknown schema versions, missing fields, wrong types, NaN/inf, oversize
strings and inconsistent lists raise `EventError` with the field named, never anything else.
"""

from __future__ import annotations

import operator
import re
from typing import Annotated, Any, Literal, TypeVar, get_args, overload

import msgspec

from bandit.contracts.nesting import depth_message, too_deep

MAX_ID = 512
MAX_FEATURES = 1024
MAX_CANDIDATES = 4096
MAX_DEAD_PAYLOAD = 64 * 1024  # JSON-escaped, a dead letter may be up to 6x its payload

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)]
FeatureName = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
# Bounds keep numbers finite and inside VW's float32 range after encoding.
FeatureNumber = Annotated[float, msgspec.Meta(ge=-1e30, le=1e30)]
FeatureValue = bool | int | FeatureNumber | Annotated[str, msgspec.Meta(max_length=4096)]
Features = Annotated[dict[FeatureName, FeatureValue], msgspec.Meta(max_length=MAX_FEATURES)]
Timestamp = Annotated[float, msgspec.Meta(ge=0.0, le=1e11)]  # Unix seconds
Propensity = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
Reward = Annotated[float, msgspec.Meta(ge=-1e9, le=1e9)]
Group = Literal["treatment", "control"]
GROUPS: tuple[str, ...] = get_args(Group)
FeedbackType = Literal["impression", "click", "play", "watch"]


class EventError(ValueError):
    """An event that does not meet its contract; the message names the field."""


class NewerSchemaError(EventError):
    """An event of a schema version this reader does not know (`artbandit.decision/2`)."""


# Compatibility: a field added to a schema is a minor change (readers that do not know it
# ignore it, and still validate every field they know); a field removed, renamed, retyped
# or made stricter needs a new schema version (`/2`), which older readers refuse by name.
class _Frozen(msgspec.Struct, frozen=True, kw_only=True):
    pass


class Context(_Frozen, frozen=True):
    """What the policy saw about the person and the request: the shared VW features."""

    user: Features = msgspec.field(default_factory=dict)
    request: Features = msgspec.field(default_factory=dict)


class Candidate(_Frozen, frozen=True, omit_defaults=True):
    """One action a slot can take: an artwork, a hero title or a row.

    `default` marks the editorial default, what the control group sees. `floor` asks for
    the slot's exposure floor (a new or long-tail title; serving also sets it on candidates
    it has shown too rarely), so a logged event says which candidates had it.
    """

    id: Id
    features: Features = msgspec.field(default_factory=dict)
    default: bool = False
    floor: bool = False


class PolicyRef(_Frozen, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    version: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ShadowScore(_Frozen, frozen=True):
    """What a slot's shadow policy would have done (`slots.<slot>.shadow`): its pmf over the
    candidates at each chosen position, given the rows the live policy placed above."""

    policy: PolicyRef
    probabilities: Annotated[
        list[Annotated[list[Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]],
                       msgspec.Meta(max_length=MAX_CANDIDATES)]],
        msgspec.Meta(max_length=MAX_CANDIDATES),
    ]  # fmt: skip


_EVENT = dict(tag_field="schema", frozen=True, kw_only=True)


class DecisionEvent(msgspec.Struct, tag="artbandit.decision/1", **_EVENT):
    """One slot decision as served: what was shown, with which probability, to whom."""

    decision_id: Id
    ts: Timestamp
    slot: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    key: Annotated[str, msgspec.Meta(max_length=MAX_ID)]
    user_hash: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None
    group: Group
    policy: PolicyRef
    context: Context
    candidates: Annotated[list[Candidate], msgspec.Meta(min_length=1, max_length=MAX_CANDIDATES)]
    chosen: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=MAX_CANDIDATES)]
    probabilities: Annotated[list[Propensity], msgspec.Meta(max_length=MAX_CANDIDATES)]
    explored: bool
    # the slot's holdout fraction when this was decided (null from writers before it was
    # logged): what the lift report checks the split against
    holdout_fraction: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    # single-choice slots: the probability the slot's treatment policy gives the editorial
    # default for this request, chosen or not, in control too (null when not logged): where
    # the log supports the default, which the check of off-policy estimates against the
    # holdout needs (bandit.measurement.calibration)
    default_probability: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    # slots with a shadow policy: its pmfs here (null otherwise), so replay values it exactly
    shadow: ShadowScore | None = None

    def __post_init__(self) -> None:
        _check_choice(self.candidates, self.chosen, self.probabilities)
        if self.shadow is not None and (
            len(self.shadow.probabilities) != len(self.chosen)
            or any(len(pmf) != len(self.candidates) for pmf in self.shadow.probabilities)
        ):
            raise ValueError("shadow.probabilities: one pmf over the candidates per chosen")

    def shadow_weight(self) -> float | None:
        """The shadow's probability of the logged choices over the live policy's: a page's
        product over its positions (None without a shadow)."""
        if self.shadow is None:
            return None
        weight = 1.0
        for k, index in enumerate(self.chosen_indices()):
            weight *= self.shadow.probabilities[k][index] / self.probabilities[k]
        return weight

    def chosen_indices(self) -> list[int]:
        """Positions of the chosen ids in `candidates`, in chosen order."""
        index = {c.id: i for i, c in enumerate(self.candidates)}
        return [index[c] for c in self.chosen]


class FeedbackEvent(msgspec.Struct, tag="artbandit.feedback/1", **_EVENT):
    """What the person did with a decision. `value` carries minutes for `watch`."""

    decision_id: Id
    ts: Timestamp
    type: FeedbackType
    position: Annotated[int, msgspec.Meta(ge=0, le=MAX_CANDIDATES)] | None = None
    value: Annotated[float, msgspec.Meta(ge=0.0, le=1e6)] | None = None


Count = Annotated[float, msgspec.Meta(ge=0.0, le=1e9)]


class Outcomes(_Frozen, frozen=True):
    """What the person did with a decision, summed over its positions, whatever the reward
    counts: the lift report's guardrails (a reward that rises while plays fall)."""

    clicks: Count = 0.0
    plays: Count = 0.0
    watch_minutes: Count = 0.0


OUTCOMES = ("clicks", "plays", "watch_minutes")


class RewardedEvent(DecisionEvent, tag="artbandit.rewarded/1", kw_only=True):
    """A decision joined with its feedback: the propensity-stamped training and replay record.

    It carries every field of the decision, plus the rewards per chosen position and (from
    writers that log them; null before) its outcomes.
    """

    rewards: Annotated[list[Reward], msgspec.Meta(max_length=MAX_CANDIDATES)]
    reward: Reward
    impressed: bool
    joined_at: Timestamp
    outcomes: Outcomes | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.rewards) != len(self.chosen):
            raise ValueError("rewards must have one entry per chosen position")

    @classmethod
    def from_decision(
        cls,
        decision: DecisionEvent,
        rewards: list[float],
        impressed: bool,
        joined_at: float,
        outcomes: Outcomes | None = None,
    ) -> RewardedEvent:
        """Join a decision with its per-position rewards; `reward` is their sum."""
        fields = msgspec.structs.asdict(decision)
        return cls(
            **fields, rewards=rewards, reward=sum(rewards), impressed=impressed,
            joined_at=joined_at, outcomes=outcomes,
        )  # fmt: skip


class DeadLetterEvent(msgspec.Struct, tag="artbandit.deadletter/1", **_EVENT):
    """A message the learner could not use, with why, on `artbandit.deadletter`.

    `code` is one of a few fixed words: malformed, wrong_topic, newer_schema, unknown_slot,
    late, unknown_decision, bad_position, unlearnable. `payload` is the message as received
    (UTF-8, undecodable bytes replaced), its first `MAX_DEAD_PAYLOAD` characters only when
    it is longer, so that a dead letter always fits where the message did; then
    `payload_bytes` says how long the message was. `offset` is null when the join, not the
    decoder, gave up on an event it had accepted earlier.
    """

    code: str
    reason: str
    topic: str
    partition: int
    offset: int | None
    key: str | None
    payload: str
    ts: Timestamp  # when it was dead-lettered
    payload_bytes: int | None = None  # set when `payload` was cut to MAX_DEAD_PAYLOAD

    @classmethod
    def carrying(cls, value: bytes | None, **fields: Any) -> DeadLetterEvent:
        """A dead letter for the message `value`, cut to `MAX_DEAD_PAYLOAD` if longer."""
        if value is None:
            return cls(payload="", **fields)
        if len(value) <= MAX_DEAD_PAYLOAD:
            return cls(payload=value.decode(errors="replace"), **fields)
        cut = value[:MAX_DEAD_PAYLOAD].decode(errors="ignore")
        return cls(payload=cut, payload_bytes=len(value), **fields)


Event = DecisionEvent | FeedbackEvent | RewardedEvent
E = TypeVar("E", DecisionEvent, FeedbackEvent, RewardedEvent, DeadLetterEvent)

_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t)
    for t in (DecisionEvent, FeedbackEvent, RewardedEvent, DeadLetterEvent, Event)
}


@overload
def decode(data: bytes | str | None) -> Event: ...
@overload
def decode(data: bytes | str | None, type_: type[E]) -> E: ...
def decode(data: bytes | str | None, type_: Any = Event) -> Any:
    """Decode one JSON event of `type_` (default: any event, chosen by its schema). A Kafka
    tombstone (a null value) is no event, and is refused like any other bad input."""
    if data is None:
        raise EventError("(body): a tombstone (null value), not an event")
    try:
        event = _decoders[type_].decode(data)
    except msgspec.ValidationError as exc:
        field, message = field_and_message(exc)
        named = _SCHEMA_VALUE.match(message) if field == "schema" else None
        if named is not None and int(named.group(2)) > KNOWN_SCHEMAS.get(named.group(1), 1 << 30):
            name, known = named.group(1), KNOWN_SCHEMAS[named.group(1)]
            raise NewerSchemaError(
                f"schema: {name}/{named.group(2)} is a version this reader does not know "
                f"(it reads {name}/{known}); upgrade it"
            ) from None
        raise EventError(f"{field}: {message}") from None
    except msgspec.DecodeError as exc:
        raise EventError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise EventError(f"{too_deep(data) or '(body)'}: {depth_message()}") from None
    return event


def encode_unchecked(event: Event | DeadLetterEvent) -> bytes:
    """`encode` without the check against the contract: for a hot path whose bytes are
    checked by `decode` where they leave the host (see `serving.shipper`)."""
    return _encoder.encode(event)


def encode(event: Event | DeadLetterEvent) -> bytes:
    """Encode an event to JSON, refusing anything `decode` would refuse (e.g. NaN, bad lists)."""
    data = _encoder.encode(event)
    decode(data, next(t for t in type(event).__mro__ if t in _decoders))  # API subclasses too
    return data


def json_schema(type_: type) -> dict[str, Any]:
    """The JSON Schema of one event type, for teams that produce or consume these topics."""
    return msgspec.json.schema(type_)


_ID = operator.attrgetter("id")


def _check_choice(
    candidates: list[Candidate], chosen: list[str], probabilities: list[float]
) -> None:
    ids = set(map(_ID, candidates))
    if len(ids) != len(candidates):
        raise ValueError("candidates: ids must be unique")
    if len(set(chosen)) != len(chosen):
        raise ValueError("chosen: ids must be unique")
    if not ids.issuperset(chosen):
        raise ValueError("chosen: every id must be one of the candidates")
    if len(probabilities) != len(chosen):
        raise ValueError("probabilities must have one entry per chosen position")


def validation_path(exc: msgspec.ValidationError) -> tuple[str, str, str | None]:
    """Split msgspec's "message - at `$.a.b[0]`" into ("a.b[0]", "message", problem). A
    missing or unknown key, which msgspec names inside the message, is moved into the path
    and `problem` says which ("missing" or "unknown"; None for any other message). The one
    parser of msgspec's errors, for events, request bodies and config alike."""
    message, sep, where = str(exc).rpartition(" - at `$")
    if not sep:
        message, where = str(exc), ""
    path = where.rstrip("`").lstrip(".")
    named = _FIELD_IN_MESSAGE.match(message)
    if named is None:
        return path, message, None
    path = f"{path}.{named.group(2)}" if path else named.group(2)
    return path, message, "unknown" if named.group(1) == "contains unknown" else "missing"


def field_and_message(exc: msgspec.ValidationError) -> tuple[str, str]:
    """The field a bad event or request body names, and what is wrong with it. Checks
    raised in `__post_init__` name their field first ("chosen: ..."), which joins the path."""
    field, message, problem = validation_path(exc)
    if problem is not None:
        message = "unknown field" if problem == "unknown" else "missing field"
    elif ": " in message and message.split(": ", 1)[0].replace("_", "").isalnum():
        inner, message = message.split(": ", 1)
        field = f"{field}.{inner}" if field else inner
    return field or "(body)", message


_SCHEMA_VALUE = re.compile(r"^Invalid value '(artbandit\.[a-z]+)/(\d+)'$")
# schema name -> the version this reader reads
KNOWN_SCHEMAS: dict[str, int] = {
    tag.rpartition("/")[0]: int(tag.rpartition("/")[2])
    for tag in (
        t.__struct_config__.tag
        for t in (DecisionEvent, FeedbackEvent, RewardedEvent, DeadLetterEvent)
    )
    if isinstance(tag, str)
}
_FIELD_IN_MESSAGE = re.compile(r"^Object (contains unknown|missing required) field `(.+)`$")


def schema_file_name(type_: type) -> str:
    """`artbandit.decision/1` -> `decision-v1.json`."""
    tag: str = type_.__struct_config__.tag  # type: ignore[attr-defined]  # a tagged Struct
    return tag.replace("artbandit.", "").replace("/", "-v") + ".json"
