"""The admin API (`/v1/admin/...`), a Flask Blueprint behind a bearer token: pin and roll
back policy versions, re-read the config, the lift report, and self-tuning."""

from __future__ import annotations

import contextlib
import hmac
import time
from typing import Any

import msgspec
from flask import Blueprint, Response, current_app, request

from bandit.config import SHADOW, Config, ConfigError, shadow_key
from bandit.learning.tuning import TuningError, TuningState
from bandit.measurement.lift import lift_report, to_dict
from bandit.measurement.tallies import decisions, merge
from serving import api
from serving.state import ServiceState, apply_config, json_response, request_body, service_state
from storage.model_store import UNTRAINED, ModelStore, ModelStoreError

admin = Blueprint("admin", __name__, url_prefix="/v1/admin")


def _state() -> ServiceState:
    return service_state(current_app)


@admin.before_request
def _authorise() -> None:
    state = _state()
    header = request.headers.get("Authorization", "")
    supplied = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not state.admin_token or not hmac.compare_digest(
        supplied.encode(), state.admin_token.encode()
    ):
        raise api.RequestError("Authorization", "a valid bearer token is required", status=401,
                               reason="unauthorised")  # fmt: skip


@admin.post("/promote")
def promote() -> Response:
    state = _state()
    body = api.decode_body(request_body(), api.PromoteRequest)
    _known_slot(state, body.slot)
    if body.version == "latest":
        state.store.pin(body.slot, None)
    elif body.version == SHADOW:
        _check_shadow_gain(state, body.slot, body.force)
        state.store.pin(body.slot, SHADOW)
    else:
        _check_loadable(state, body.slot, body.version)
        state.store.pin(body.slot, body.version)
    state.registry.refresh()
    return json_response(_served(state, body.slot))


@admin.post("/rollback")
def rollback() -> Response:
    state = _state()
    body = api.decode_body(request_body(), api.RollbackRequest)
    _known_slot(state, body.slot)
    previous = state.registry.previous_version(body.slot)
    if previous is None:
        entry = state.registry.get(body.slot)
        raise api.RequestError(
            "slot", f"no whole version of {body.slot!r} older than {entry and entry.version}",
            status=409, reason="nothing_to_roll_back",
        )  # fmt: skip
    state.store.pin(body.slot, previous)
    state.registry.refresh()
    return json_response(_served(state, body.slot))


@admin.post("/reload")
def reload() -> Response:
    state = _state()
    if state.config_loader is None:
        raise api.RequestError("(config)", "this server has no config source to re-read",
                               status=409, reason="no_config_source")  # fmt: skip
    try:
        config = state.config_loader()
    except ConfigError as exc:
        raise api.RequestError(exc.key or "(config)", exc.problem, reason="bad_config") from None
    apply_config(state, config)
    state.reload_signal = state.store.signal_reload()  # the other workers and replicas follow
    return json_response({"slots": state.registry.versions()})


@admin.get("/tuning")
def tuning() -> Response:
    state = _state()
    return json_response({slot: _tuning(state, slot) for slot in _vw_slots(state)})


@admin.post("/tuning")
def change_tuning() -> Response:
    state = _state()
    body = api.decode_body(request_body(), api.TuningRequest)
    if body.slot not in _vw_slots(state):
        raise api.RequestError("slot", f"{body.slot!r} is not a VW slot of the config",
                               reason="unknown_slot")  # fmt: skip
    if body.action != "pin" and body.revision is not None:
        raise api.RequestError("revision", "only pin takes a revision", reason="invalid")

    now = time.time()

    def change(current: TuningState) -> TuningState:
        if body.action == "pin":
            return current.pin(body.revision, at=now)
        if body.action == "unpin":
            return current.unpin(at=now)
        return current.rollback(at=now)

    try:
        state.store.update_tuning(body.slot, change)
    except TuningError as exc:
        raise api.RequestError("revision", str(exc), status=409,
                               reason="no_such_revision") from None  # fmt: skip
    return json_response(_tuning(state, body.slot))


@admin.get("/lift")
def lift() -> Response:
    state = _state()
    return json_response(lift_answer(state.store, state.config))


def lift_answer(store: ModelStore, config: Config) -> dict[str, Any]:
    """The lift report from the sums the learners keep per partition in the model store:
    constant time however long the rewarded log, and exact (each rewarded event counted
    once, as of each partition's last checkpoint)."""
    topic = config.kafka.topics.decisions
    parts = [t for slot in config.slots for t in store.tallies(slot) if t.topic == topic]
    tallies = merge({t.slot: t.periods} for t in parts)
    report: dict[str, Any] = {
        "source": "learner lift sums in the model store",
        "partitions": len({t.partition for t in parts}),
        "events": decisions(tallies),
        "as_of": min((t.written_at for t in parts), default=None),
    }
    report.update(to_dict(lift_report(tallies, config)))
    return report


def _vw_slots(state: ServiceState) -> list[str]:
    return [name for name, slot in state.config.slots.items() if slot.policy == "vw"]


def _tuning(state: ServiceState, slot: str) -> dict[str, Any]:
    """A slot's tuning history as the admin API shows it."""
    history = state.store.tuning(slot)
    entry = state.registry.get(slot)
    served = None
    if entry is not None and entry.version != UNTRAINED:
        with contextlib.suppress(ModelStoreError):
            served = state.store.read_info(slot, entry.version)[0].tuning_revision
    return {
        "slot": slot,
        "revision": history.revision,
        "overrides": history.overrides,
        "pinned": history.pinned,
        "served_version": entry.version if entry else None,
        "served_revision": served,
        "history": msgspec.to_builtins(history.history),
    }


def _known_slot(state: ServiceState, slot: str) -> None:
    if slot not in state.config.slots:
        raise api.RequestError("slot", f"unknown slot {slot!r}", reason="unknown_slot")


def _check_shadow_gain(state: ServiceState, slot: str, force: bool) -> None:
    """Refuse to promote a shadow that is not configured, or whose gain over the live policy
    (from the learners' lift sums) is not significant, unless forced."""
    if shadow_key(slot) not in state.registry.configs:
        raise api.RequestError("version", f"slot {slot!r} has no shadow (slots.{slot}.shadow)",
                               status=409, reason="no_shadow")  # fmt: skip
    report = lift_answer(state.store, state.config)
    found = next((s for s in report["slots"] if s["slot"] == slot), None)
    shadow: dict[str, Any] | None = found.get("shadow") if found else None
    watched: dict[str, Any] | None = shadow["sequence"] if shadow else None
    if force or (watched and watched["low"] is not None and watched["low"] > 0):
        return
    figures = "no measured gain yet"
    if shadow is not None and watched is not None and watched["low"] is not None:
        gain = shadow["gain"]
        more = shadow["needed"] - gain["impressions"] if shadow["needed"] is not None else None
        figures = (
            f"gain {gain['value']:+.4f}, always-valid [{watched['low']:+.4f}, "
            f"{watched['high']:+.4f}] over {gain['impressions']:,.0f} decisions; "
            + (f"at this gain about {more:,.0f} more decisions would show it"
               if more is not None and more > 0 else "no gain to show")
        )  # fmt: skip
    raise api.RequestError(
        "version", f"the shadow's gain over the live policy is not significant ({figures}); "
        "asking again is safe (the interval stays valid however often it is read): wait for "
        "more decisions, or pass force", status=409, reason="not_significant",
    )  # fmt: skip


def _check_loadable(state: ServiceState, slot: str, version: str) -> None:
    try:
        state.store.load(slot, version, state.config.slots[slot]).policy.close()
    except ModelStoreError as exc:
        raise api.RequestError("version", str(exc), status=409, reason="bad_version") from None


def _served(state: ServiceState, slot: str) -> dict[str, str | None]:
    entry = state.registry.get(slot)
    return {"slot": slot, "version": entry.version if entry else None,
            "pinned": state.store.pinned(slot)}  # fmt: skip
