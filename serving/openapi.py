"""The OpenAPI document of the service, generated from the same types that validate requests,
with the limits the running config applies (slot names, max slots and candidates)."""

from __future__ import annotations

from typing import Any

import msgspec

from bandit.config import Config
from serving import api

_REF = "#/components/schemas/{name}"


def _body(name: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF.format(name=name)}}},
    }


def _answer(description: str, name: str | None = None) -> dict[str, Any]:
    if name is None:
        return {"description": description}
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(name=name)}}},
    }


def openapi_document(config: Config) -> dict[str, Any]:
    (feedback_schema, _), components = msgspec.json.schema_components(
        [api.Feedback, api.DecideRequest], ref_template=_REF
    )
    _, more = msgspec.json.schema_components(
        [api.DecideResponse, api.FeedbackAccepted, api.ErrorResponse, api.PromoteRequest,
         api.RollbackRequest, api.TuningRequest],
        ref_template=_REF,
    )  # fmt: skip
    components.update(more)
    components["Feedback"] = feedback_schema
    components["DecideRequest"]["properties"]["slots"]["maxItems"] = config.serving.max_slots
    slot = components["SlotRequest"]["properties"]
    slot["candidates"]["maxItems"] = config.serving.max_candidates
    slot["slot"]["enum"] = sorted(config.slots)
    errors = {
        "400": _answer("Bad input; the error names the field.", "ErrorResponse"),
        "413": _answer("Body over the size limit.", "ErrorResponse"),
    }
    admin_errors = {**errors, "401": _answer("Missing or wrong bearer token.", "ErrorResponse")}
    admin = {"security": [{"bearer": []}], "responses": {"200": _answer("Done."), **admin_errors}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "artbandit decision service", "version": "1"},
        "paths": {
            "/v1/decide": {
                "post": {
                    "summary": "Decide every slot of a page in one call.",
                    "requestBody": _body("DecideRequest"),
                    "responses": {
                        "200": _answer(
                            "One decision per slot, in request order.", "DecideResponse"
                        ),
                        "503": _answer("A slot has no policy yet (see /readyz).", "ErrorResponse"),
                        **errors,
                    },
                }
            },
            "/v1/feedback": {
                "post": {
                    "summary": "Forward one feedback event, or a list, to Kafka.",
                    "requestBody": _body("Feedback"),
                    "responses": {"202": _answer("Accepted.", "FeedbackAccepted"), **errors},
                }
            },
            "/healthz": {"get": {"summary": "Alive.", "responses": {"200": _answer("Alive.")}}},
            "/readyz": {
                "get": {
                    "summary": "Every configured slot has a policy.",
                    "responses": {"200": _answer("Ready."), "503": _answer("Not ready.")},
                }
            },
            "/metrics": {
                "get": {"summary": "Prometheus metrics.", "responses": {"200": _answer("Metrics.")}}
            },
            "/v1/admin/promote": {
                "post": {
                    "summary": "Pin a slot to a version ('latest' unpins).",
                    "requestBody": _body("PromoteRequest"),
                    **admin,
                }
            },
            "/v1/admin/rollback": {
                "post": {
                    "summary": "Pin a slot to the version before the served one.",
                    "requestBody": _body("RollbackRequest"),
                    **admin,
                }
            },
            "/v1/admin/tuning": {
                "get": {
                    "summary": "Each VW slot's self-tuning history: the settings it should "
                    "run (revision, overrides, evidence), whether pinned, and the tuned "
                    "revision of the version served.",
                    **admin,
                },
                "post": {
                    "summary": "Pin, unpin or roll back a slot's tuned settings.",
                    "requestBody": _body("TuningRequest"),
                    **admin,
                },
            },
            "/v1/admin/reload": {
                "post": {"summary": "Re-read the config file and reload policies.", **admin}
            },
            "/v1/admin/lift": {
                "get": {
                    "summary": "Treatment vs control per slot, from the learners' running sums of "
                    "the rewarded events: reward per decision with 95% intervals, lift, "
                    "p-value, sample-ratio check.",
                    **admin,
                }
            },
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
