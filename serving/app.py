"""The Flask app factory: `create_app(config)` builds a complete decision service.

Bad input never becomes a 5xx: every error leaves as JSON naming the field.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgspec
from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from bandit.config import Config, ConfigError, resolve_bootstrap
from bandit.lift import decisions, lift_report, merge, to_dict
from bandit.model_store import ModelStore, ModelStoreError, VersionInfo
from bandit.tuning import TuningError, TuningState
from serving import api
from serving.decider import PageDecider
from serving.event_producer import DROP_REASONS, EventProducer
from serving.holdout import Holdout
from serving.metrics import ServingMetrics, version_number
from serving.model_feed import ModelFeed
from serving.openapi import openapi_document
from serving.policy_registry import UNTRAINED, PolicyEntry, PolicyRegistry, ReloadEvent

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


@dataclass
class ServiceState:
    config: Config
    store: ModelStore
    registry: PolicyRegistry
    decider: PageDecider
    producer: EventProducer
    model_feed: ModelFeed
    metrics: ServingMetrics
    admin_token: str | None
    config_loader: Callable[[], Config] | None
    reload_signal: str | None = None


def create_app(
    config: Config,
    *,
    config_loader: Callable[[], Config] | None = None,
    registry: CollectorRegistry | None = None,
    environ: Mapping[str, str] = os.environ,
    holdout_seed: int | None = None,
) -> Flask:
    """Build the service. `config_loader` re-reads the config for /v1/admin/reload."""
    metrics = ServingMetrics(registry or CollectorRegistry())
    topics = config.kafka.topics
    metrics.start_at_zero(list(config.slots), [topics.decisions, topics.feedback], DROP_REASONS)
    store = ModelStore(config.model_store.path, config.model_store.keep_versions)
    policies = PolicyRegistry(
        config, store, on_reload=lambda e, entry: _on_reload(metrics, e, entry)
    )
    policies.refresh()
    producer = EventProducer(
        config.kafka,
        resolve_bootstrap(config),
        config.kafka.client_id,
        config.serving.log_buffer_events,
        config.serving.log_outage_s,
        on_drop=lambda topic, reason: metrics.events_dropped.labels(topic, reason).inc(),
        on_sent=lambda topic: metrics.events_sent.labels(topic).inc(),
    )
    model_feed = ModelFeed(
        config.kafka,
        resolve_bootstrap(config),
        config.kafka.topics.models,
        store,
        on_version=lambda info: _on_published(metrics, policies, info),
        client_id=f"{config.kafka.client_id}-serving",
    )
    holdout = Holdout(config.serving.holdout_salt, config.serving.user_hash_salt, holdout_seed)
    state = ServiceState(
        config=config,
        store=store,
        registry=policies,
        decider=PageDecider(config, policies, holdout),
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
    _register_routes(app, state)
    _register_errors(app, state)
    return app


def service_state(app: Flask) -> ServiceState:
    return app.extensions["artbandit"]


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


def _json_response(value, status: int = 200) -> Response:
    return Response(_json.encode(value), status=status, mimetype="application/json")


def _register_routes(app: Flask, state: ServiceState) -> None:
    @app.before_request
    def _start_timer():
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

    @app.post("/v1/decide")
    def decide():
        body = api.parse_decide(_request_body(), state.config)
        page = state.decider.decide(body)
        topic = state.config.kafka.topics.decisions
        for event, decision in zip(page.events, page.decisions, strict=True):
            state.producer.send(topic, event.decision_id, event)
            state.metrics.decisions.labels(
                decision.slot, decision.group, "true" if decision.explored else "false"
            ).inc()
        return _json_response(api.DecideResponse(page.decisions))

    @app.post("/v1/feedback")
    def feedback():
        body = api.decode_body(_request_body(), api.Feedback)
        batch = body if isinstance(body, list) else [body]
        topic = state.config.kafka.topics.feedback
        accepted = 0
        for event in batch:
            accepted += state.producer.send(topic, event.decision_id, event)
            state.metrics.feedback.labels(event.type).inc()
        return _json_response(api.FeedbackAccepted(accepted), status=202)

    @app.get("/healthz")
    def healthz():
        return _json_response({"status": "ok"})

    @app.get("/readyz")
    def readyz():
        versions = state.registry.versions()
        missing = sorted(set(state.config.slots) - set(versions))
        status = 503 if missing else 200
        return _json_response(
            {"ready": not missing, "versions": versions, "missing": missing}, status
        )

    @app.get("/metrics")
    def metrics():
        _refresh_gauges(state)
        return Response(state.metrics.exposition(), mimetype="text/plain; version=0.0.4")

    @app.get("/openapi.json")
    def openapi():
        return _json_response(openapi_document(state.config))

    @app.post("/v1/admin/promote")
    def promote():
        _authorise(state)
        body = api.decode_body(_request_body(), api.PromoteRequest)
        _known_slot(state, body.slot)
        if body.version == "latest":
            state.store.pin(body.slot, None)
        else:
            _check_loadable(state, body.slot, body.version)
            state.store.pin(body.slot, body.version)
        state.registry.refresh()
        return _json_response(_served(state, body.slot))

    @app.post("/v1/admin/rollback")
    def rollback():
        _authorise(state)
        body = api.decode_body(_request_body(), api.RollbackRequest)
        _known_slot(state, body.slot)
        entry = state.registry.get(body.slot)
        current = entry.version if entry else None
        older = [v for v in state.store.versions(body.slot) if current is None or v < current]
        for version in reversed(older):
            try:
                state.store.read_info(body.slot, version)
            except ModelStoreError:
                continue
            state.store.pin(body.slot, version)
            state.registry.refresh()
            return _json_response(_served(state, body.slot))
        raise api.RequestError("slot", f"no whole version of {body.slot!r} older than {current}",
                               status=409, reason="nothing_to_roll_back")  # fmt: skip

    @app.post("/v1/admin/reload")
    def reload():
        _authorise(state)
        if state.config_loader is None:
            raise api.RequestError("(config)", "this server has no config source to re-read",
                                   status=409, reason="no_config_source")  # fmt: skip
        try:
            config = state.config_loader()
        except ConfigError as exc:
            raise api.RequestError(
                exc.key or "(config)", exc.problem, reason="bad_config"
            ) from None
        _apply_config(state, config)
        state.reload_signal = state.store.signal_reload()  # the other workers and replicas follow
        return _json_response({"slots": state.registry.versions()})

    @app.get("/v1/admin/tuning")
    def tuning():
        _authorise(state)
        return _json_response({slot: _tuning(state, slot) for slot in _vw_slots(state)})

    @app.post("/v1/admin/tuning")
    def change_tuning():
        _authorise(state)
        body = api.decode_body(_request_body(), api.TuningRequest)
        if body.slot not in _vw_slots(state):
            raise api.RequestError("slot", f"{body.slot!r} is not a VW slot of the config",
                                   reason="unknown_slot")  # fmt: skip
        if body.action != "pin" and body.revision is not None:
            raise api.RequestError("revision", "only pin takes a revision", reason="invalid")

        def change(current: TuningState) -> TuningState:
            if body.action == "pin":
                return current.pin(body.revision)
            if body.action == "unpin":
                return current.unpin()
            return current.rollback()

        try:
            state.store.update_tuning(body.slot, change)
        except TuningError as exc:
            raise api.RequestError("revision", str(exc), status=409,
                                   reason="no_such_revision") from None  # fmt: skip
        return _json_response(_tuning(state, body.slot))

    @app.get("/v1/admin/lift")
    def lift():
        _authorise(state)
        return _json_response(lift_answer(state.store, state.config))


def lift_answer(store: ModelStore, config: Config) -> dict:
    """The lift report from the sums the learners keep per partition in the model store:
    constant time however long the rewarded log, and exact (each rewarded event counted
    once, as of each partition's last checkpoint)."""
    topic = config.kafka.topics.decisions
    parts = [t for slot in config.slots for t in store.tallies(slot) if t.topic == topic]
    tallies = merge({t.slot: t.periods} for t in parts)
    report: dict = {
        "source": "learner lift sums in the model store",
        "partitions": len({t.partition for t in parts}),
        "events": decisions(tallies),
        "as_of": min((t.written_at for t in parts), default=None),
    }
    report.update(to_dict(lift_report(tallies, config)))
    return report


def _vw_slots(state: ServiceState) -> list[str]:
    return [name for name, slot in state.config.slots.items() if slot.policy == "vw"]


def _tuning(state: ServiceState, slot: str) -> dict:
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


def _request_body() -> bytes:
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


def _apply_config(state: ServiceState, config: Config) -> None:
    state.config = config
    state.decider = PageDecider(config, state.registry, state.decider.holdout)
    state.registry.replace_config(config)


def _tick(state: ServiceState) -> None:
    """Each worker's periodic round: follow a config reload, keep its gauges current."""
    _follow_reload(state)
    _refresh_gauges(state)


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
        _apply_config(state, state.config_loader())
    except ConfigError as exc:
        log.error("config reload refused, keeping the current config: %s", exc)


def _authorise(state: ServiceState) -> None:
    header = request.headers.get("Authorization", "")
    supplied = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not state.admin_token or not hmac.compare_digest(
        supplied.encode(), state.admin_token.encode()
    ):
        raise api.RequestError("Authorization", "a valid bearer token is required", status=401,
                               reason="unauthorised")  # fmt: skip


def _known_slot(state: ServiceState, slot: str) -> None:
    if slot not in state.config.slots:
        raise api.RequestError("slot", f"unknown slot {slot!r}", reason="unknown_slot")


def _check_loadable(state: ServiceState, slot: str, version: str) -> None:
    try:
        state.store.load(slot, version, state.config.slots[slot]).policy.close()
    except ModelStoreError as exc:
        raise api.RequestError("version", str(exc), status=409, reason="bad_version") from None


def _served(state: ServiceState, slot: str) -> dict[str, str | None]:
    entry = state.registry.get(slot)
    return {"slot": slot, "version": entry.version if entry else None,
            "pinned": state.store.pinned(slot)}  # fmt: skip


def _register_errors(app: Flask, state: ServiceState) -> None:
    def answer(field: str, message: str, reason: str, status: int) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        state.metrics.request_errors.labels(endpoint, reason, str(status)).inc()
        response = _json_response(
            api.ErrorResponse(api.ErrorDetail(field, message, reason)), status
        )
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.errorhandler(api.RequestError)
    def _request_error(exc: api.RequestError):
        return answer(exc.field, exc.message, exc.reason, exc.status)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        field = "(body)" if status == 413 else "(path)"
        return answer(field, exc.description or exc.name, _HTTP_REASONS.get(status, "http"), status)

    @app.errorhandler(Exception)
    def _internal(exc: Exception):
        log.exception("internal error")
        return answer("(server)", "internal error", "internal", 500)
