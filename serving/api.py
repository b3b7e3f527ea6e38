"""The HTTP contract of the decision service: request and response types, decoded strictly.

`parse_decide` decodes the body and applies the limits that depend on config (slot names,
candidate and slot counts); any problem raises `RequestError` naming the field.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from bandit.config import Config
from bandit.contracts.events import (
    MAX_CANDIDATES,
    Candidate,
    Features,
    FeedbackEvent,
    Id,
    field_and_message,
)
from bandit.contracts.nesting import depth_message, too_deep

ABSOLUTE_MAX_SLOTS = 10_000


class RequestError(ValueError):
    """Bad input: answered with `status` and a JSON error naming `field`."""

    def __init__(self, field: str, message: str, status: int = 400, reason: str = "invalid"):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status
        self.reason = reason


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class CandidateRequest(Candidate, forbid_unknown_fields=True, frozen=True):
    """A candidate as the frontend sends it: strict, as every request body (the events
    that carry candidates accept fields from newer writers)."""


class FeedbackRequest(FeedbackEvent, forbid_unknown_fields=True):
    """A feedback event posted to the service: strict, then forwarded as it is."""


class User(_Strict, frozen=True):
    """The person asking; `id` is hashed before it goes anywhere. Omit it for anonymous users."""

    id: Id | None = None
    features: Features = msgspec.field(default_factory=dict)


class SlotRequest(_Strict, frozen=True, kw_only=True):
    """One slot of the page. `select` (rows only) is how many rows to place."""

    slot: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    key: Annotated[str, msgspec.Meta(max_length=512)] = ""
    candidates: Annotated[
        list[CandidateRequest], msgspec.Meta(min_length=1, max_length=MAX_CANDIDATES)
    ]
    select: Annotated[int, msgspec.Meta(ge=1, le=MAX_CANDIDATES)] | None = None


class Consent(_Strict, frozen=True):
    """What the person agreed to. Without `personalization`, nothing about them is used or
    logged: each slot serves its `unconsented` choice (config), the editorial default
    unlogged or its policy on the request context alone, logged without user features and
    without a user hash."""

    personalization: bool = True


class DecideRequest(_Strict, frozen=True, kw_only=True):
    """Every slot of one page view, decided in one call."""

    user: User | None = None
    consent: Consent = msgspec.field(default_factory=Consent)
    context: Features = msgspec.field(default_factory=dict)
    slots: Annotated[list[SlotRequest], msgspec.Meta(min_length=1, max_length=ABSOLUTE_MAX_SLOTS)]


class Decision(msgspec.Struct, frozen=True):
    """One slot's answer. `decision_id` is null, and `group` "unpersonalized", for a decision
    that is not logged (no consent, editorial default): it takes no feedback."""

    decision_id: str | None
    slot: str
    key: str
    chosen: list[str]
    probabilities: list[float]
    group: Literal["treatment", "control", "unpersonalized"]
    policy_version: str
    explored: bool


class DecideResponse(msgspec.Struct, frozen=True):
    decisions: list[Decision]


class FeedbackAccepted(msgspec.Struct, frozen=True):
    accepted: int


class ErrorDetail(msgspec.Struct, frozen=True):
    field: str
    message: str
    reason: str


class ErrorResponse(msgspec.Struct, frozen=True):
    error: ErrorDetail


class PromoteRequest(_Strict, frozen=True):
    """Pin `slot` to `version`; the version `"latest"` follows the newest again, and
    `"shadow"` serves the slot's shadow policy (its newest versions, as they come), once its
    estimated gain over the live policy is significant, or with `force`."""

    slot: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    version: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    force: bool = False


class RollbackRequest(_Strict, frozen=True):
    slot: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class TuningRequest(_Strict, frozen=True):
    """Change a slot's self-tuning: `pin` the settings of `revision` (default: the running
    ones; 0: the configured ones) so the tuner leaves them, `unpin`, or `rollback` to the
    settings before the running ones (pinned). The learner switches at its next
    checkpoint."""

    slot: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    action: Literal["pin", "unpin", "rollback"]
    revision: Annotated[int, msgspec.Meta(ge=0)] | None = None


Feedback = (
    FeedbackRequest
    | Annotated[list[FeedbackRequest], msgspec.Meta(min_length=1, max_length=10_000)]
)

_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def decode_body(body: bytes, type_: Any) -> Any:
    """Decode a JSON body as `type_`; errors name the field."""
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        field, message = field_and_message(exc)
        raise RequestError(name_the_key(field, body), message) from None
    except msgspec.DecodeError as exc:
        raise RequestError("(body)", f"not valid JSON: {exc}", reason="bad_json") from None
    except RecursionError:
        where = too_deep(body) or "(body)"
        raise RequestError(where, depth_message(), reason="too_deep") from None


_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]|\[\.\.\.\]")


def name_the_key(field: str, body: bytes) -> str:
    """msgspec names a bad value inside a table of features `features[...]`, not by its key;
    find the first key there whose value is not a feature value (str, number, bool)."""
    if not field.endswith("[...]"):
        return field
    table = field.removesuffix("[...]")
    try:
        node = msgspec.json.decode(body)
        for name, index in _SEGMENT.findall(table):
            node = node[name] if name else node[int(index)]
    except RecursionError:  # a value nested too deep to decode: the scan names its key
        deep = too_deep(body) or ""
        key = _SEGMENT.match(deep, len(table) + 1) if deep.startswith(f"{table}.") else None
        return f"{table}.{key.group()}" if key else field
    except (msgspec.DecodeError, KeyError, IndexError, TypeError):
        return field
    if not isinstance(node, dict):
        return field
    bad = next((k for k, v in node.items() if not isinstance(v, str | int | float)), None)
    return field if bad is None else f"{table}.{bad}"


def parse_decide(body: bytes, config: Config) -> DecideRequest:
    request: DecideRequest = decode_body(body, DecideRequest)
    limits = config.serving
    if len(request.slots) > limits.max_slots:
        raise RequestError(
            "slots", f"at most {limits.max_slots} slots per request", reason="too_many_slots"
        )
    for i, slot in enumerate(request.slots):
        kind = config.slots.get(slot.slot)
        if kind is None:
            known = ", ".join(sorted(config.slots))
            raise RequestError(
                f"slots[{i}].slot",
                f"unknown slot {slot.slot!r} (known: {known})",
                reason="unknown_slot",
            )
        if len(slot.candidates) > limits.max_candidates:
            raise RequestError(
                f"slots[{i}].candidates",
                f"at most {limits.max_candidates} candidates per slot",
                reason="too_many_candidates",
            )
        seen: set[str] = set()
        for j, candidate in enumerate(slot.candidates):
            if candidate.id in seen:
                raise RequestError(
                    f"slots[{i}].candidates[{j}].id",
                    f"duplicate candidate id {candidate.id!r}",
                    reason="duplicate_candidate",
                )
            seen.add(candidate.id)
        if slot.select not in (None, 1) and not kind.kind.ranked:
            raise RequestError(
                f"slots[{i}].select",
                f"a slot of kind {kind.kind} chooses exactly one",
                reason="invalid",
            )
    return request
