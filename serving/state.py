"""What every request handler of the service shares: its state, JSON answers, and reading a
body whole. The public routes (`serving.app`) and the admin routes (`serving.admin`) both
build on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from bandit.config import Config
from kafkaio import memory
from serving import api
from serving.decider import PageDecider
from serving.event_producer import EventProducer
from serving.metrics import ServingMetrics
from serving.model_feed import ModelFeed
from serving.policy_registry import PolicyRegistry
from serving.shipper import ShipperClient
from storage.model_store import ModelStore

_json = msgspec.json.Encoder()


@dataclass
class ServiceState:
    config: Config
    store: ModelStore
    registry: PolicyRegistry
    decider: PageDecider
    producer: EventProducer | ShipperClient
    model_feed: ModelFeed
    metrics: ServingMetrics
    admin_token: str | None
    config_loader: Callable[[], Config] | None
    reload_signal: str | None = None
    # a burst's freed C memory back to the system, from the reload thread (kafkaio.memory):
    # requests and policy loads in threads share one glibc arena, which keeps its peak
    upkeep: memory.Upkeep = field(default_factory=memory.Upkeep)


def service_state(app: Flask) -> ServiceState:
    state: ServiceState = app.extensions["artbandit"]
    return state


def json_response(value: Any, status: int = 200) -> Response:
    return Response(_json.encode(value), status=status, mimetype="application/json")


def request_body() -> bytes:
    """The request body, read whole. A body the server cannot read (chunked encoding with a
    bad chunk size, fewer bytes than declared, a client gone mid-body) is the client's fault:
    the WSGI server raises its own errors from the stream, so any of them is a 400 here."""
    try:
        return request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise
    except Exception as exc:
        raise api.RequestError(
            "(body)", f"the body could not be read: {_body_problem(exc)}", reason="unreadable"
        ) from None


def _body_problem(exc: Exception) -> str:
    """The server's own words for it, without paths or addresses (gunicorn's are short)."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 and "/" not in text else type(exc).__name__


def apply_config(state: ServiceState, config: Config) -> None:
    """Serve `config` from now on: the decider and every slot's policy follow it."""
    state.config = config
    state.decider = state.decider.reconfigured(config)
    state.registry.replace_config(config)
