"""The Flask app factory: `create_app(config)` builds a complete decision service: the public
routes here, the admin routes from `serving.admin`.

Bad input never becomes a 5xx: every error leaves as JSON naming the field.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping

import msgspec
from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry
from werkzeug.exceptions import HTTPException

from bandit.config import Config, ConfigError, resolve_bootstrap
from serving import api
from serving.admin import admin
from serving.decider import PageDecider
from serving.event_producer import DROP_REASONS, EventProducer
from serving.holdout import Holdout
from serving.metrics import ServingMetrics, version_number
from serving.model_feed import ModelFeed
from serving.openapi import openapi_document
from serving.policy_registry import PolicyEntry, PolicyRegistry, ReloadEvent
from serving.shipper import ShipperClient
from serving.state import (
    ServiceState,
    apply_config,
    json_response,
    request_body,
)
from storage.model_store import ModelStore, VersionInfo

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()

# A JSON API: nothing to sniff, frame, cache or run scripts from.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
_HTTP_REASONS = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


def create_app(
    config: Config,
    *,
    config_loader: Callable[[], Config] | None = None,
    registry: CollectorRegistry | None = None,
    environ: Mapping[str, str] = os.environ,
    holdout_seed: int | None = None,
    shipper_path: str | None = None,
) -> Flask:
    """Build the service. `config_loader` re-reads the config for /v1/admin/reload. With
    `shipper_path` (under `artbandit serve`), events go to the host's shipper process;
    without, this process owns a Kafka producer."""
    metrics = ServingMetrics(registry or CollectorRegistry())
    topics = config.kafka.topics
    metrics.start_at_zero(list(config.slots), [topics.decisions, topics.feedback], DROP_REASONS)
    store = ModelStore(config.model_store.path, config.model_store.keep_versions)
    policies = PolicyRegistry(
        config, store, on_reload=lambda e, entry: _on_reload(metrics, e, entry)
    )
    policies.refresh()
    producer = _producer(config, metrics, shipper_path)
    model_feed = ModelFeed(
        config.kafka, resolve_bootstrap(config), config.kafka.topics.models, store,
        on_version=lambda info: _on_published(metrics, policies, info),
        client_id=f"{config.kafka.client_id}-serving",
    )  # fmt: skip
    holdout = Holdout(config.serving.holdout_salt, config.serving.user_hash_salt, holdout_seed)
    state = ServiceState(
        config=config,
        store=store,
        registry=policies,
        decider=PageDecider(
            config,
            policies,
            holdout,
            lambda slot, served: metrics.unconsented.labels(slot, served).inc(),
        ),
        producer=producer,
        model_feed=model_feed,
        metrics=metrics,
        admin_token=environ.get(config.serving.admin_token_env) or None,
        config_loader=config_loader,
        reload_signal=store.reload_signal(),
    )
    app = Flask("artbandit")
    app.config["MAX_CONTENT_LENGTH"] = config.serving.max_body_bytes
    app.extensions["artbandit"] = state
    _register_timing(app, state)
    _register_api(app, state)
    _register_operations(app, state)
    app.register_blueprint(admin)
    _register_errors(app, state)
    return app


def _on_reload(metrics: ServingMetrics, event: ReloadEvent, entry: PolicyEntry | None) -> None:
    if not event.ok:
        metrics.policy_reload_failures.labels(event.slot).inc()
    elif entry is not None:
        metrics.policy_version.labels(event.slot).set(version_number(entry.version))
        metrics.policy_age.labels(event.slot).set(time.time() - entry.created_at)


def _on_published(
    metrics: ServingMetrics, policies: PolicyRegistry, info: VersionInfo | None
) -> None:
    metrics.models_received.labels("installed" if info else "refused").inc()
    if info is not None:
        policies.refresh()


def _producer(
    config: Config, metrics: ServingMetrics, shipper_path: str | None
) -> EventProducer | ShipperClient:
    """Where this process's events go: the host's shipper process under `artbandit serve`,
    else a Kafka producer of its own."""
    if shipper_path is None:
        return EventProducer.for_service(config, metrics)
    return ShipperClient(
        shipper_path,
        config.serving.log_buffer_events,
        config.serving.log_outage_s,
        lambda topic, reason: metrics.events_dropped.labels(topic, reason).inc(),
    )


def _register_timing(app: Flask, state: ServiceState) -> None:
    """Every request timed (and the worker's threads started on its first)."""

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()
        # Per worker, once: started here because a gunicorn fork does not carry threads over.
        state.registry.start(state.config.serving.reload_interval_s, lambda: _tick(state))
        state.model_feed.start()

    @app.after_request
    def _observe(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        state.metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - g.started)
        response.headers.update(SECURITY_HEADERS)
        return response


def _register_api(app: Flask, state: ServiceState) -> None:
    """The frontend's routes: a page decided, feedback accepted."""

    @app.post("/v1/decide")
    def decide() -> Response:
        body = api.parse_decide(request_body(), state.config)
        page = state.decider.decide(body)
        topic = state.config.kafka.topics.decisions
        for event in page.events:
            state.producer.send(topic, event.decision_id, event)
        for decision in page.decisions:
            state.metrics.decisions.labels(
                decision.slot, decision.group, "true" if decision.explored else "false"
            ).inc()
        return json_response(api.DecideResponse(page.decisions))

    @app.post("/v1/feedback")
    def feedback() -> Response:
        body = api.decode_body(request_body(), api.Feedback)
        batch = body if isinstance(body, list) else [body]
        topic = state.config.kafka.topics.feedback
        accepted = 0
        for event in batch:
            accepted += state.producer.send(topic, event.decision_id, event)
            state.metrics.feedback.labels(event.type).inc()
        return json_response(api.FeedbackAccepted(accepted), status=202)


def _register_operations(app: Flask, state: ServiceState) -> None:
    """The operators' routes: health, readiness, metrics, the OpenAPI document."""

    @app.get("/healthz")
    def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        versions = state.registry.versions()
        missing = sorted(set(state.config.slots) - set(versions))
        status = 503 if missing else 200
        return json_response(
            {"ready": not missing, "versions": versions, "missing": missing}, status
        )

    @app.get("/metrics")
    def metrics() -> Response:
        _refresh_gauges(state)
        return Response(state.metrics.exposition(), mimetype="text/plain; version=0.0.4")

    @app.get("/openapi.json")
    def openapi() -> Response:
        return json_response(openapi_document(state.config))


def _tick(state: ServiceState) -> None:
    """Each worker's periodic round: follow a config reload, keep its gauges current, give
    freed memory back to the system once a minute."""
    _follow_reload(state)
    _refresh_gauges(state)
    state.upkeep.due()


def _refresh_gauges(state: ServiceState) -> None:
    state.metrics.events_buffered.set(state.producer.outstanding)
    now = time.time()
    for slot in state.config.slots:
        entry = state.registry.get(slot)
        if entry is not None:
            state.metrics.policy_age.labels(slot).set(now - entry.created_at)


def _follow_reload(state: ServiceState) -> None:
    """Re-read the config when another worker or replica was told to (via the store)."""
    signal = state.store.reload_signal()
    if signal == state.reload_signal or state.config_loader is None:
        return
    state.reload_signal = signal
    try:
        apply_config(state, state.config_loader())
    except ConfigError as exc:
        log.error("config reload refused, keeping the current config: %s", exc)


def _register_errors(app: Flask, state: ServiceState) -> None:
    def answer(field: str, message: str, reason: str, status: int) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        state.metrics.request_errors.labels(endpoint, reason, str(status)).inc()
        response = json_response(api.ErrorResponse(api.ErrorDetail(field, message, reason)), status)
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.errorhandler(api.RequestError)
    def _request_error(exc: api.RequestError) -> Response:
        return answer(exc.field, exc.message, exc.reason, exc.status)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        field = "(body)" if status == 413 else "(path)"
        return answer(field, exc.description or exc.name, _HTTP_REASONS.get(status, "http"), status)

    @app.errorhandler(Exception)
    def _internal(exc: Exception) -> Response:
        log.exception("internal error")
        return answer("(server)", "internal error", "internal", 500)
