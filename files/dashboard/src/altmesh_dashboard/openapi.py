"""The OpenAPI 3.1 description of the JSON API, served at /api/v1/openapi.json.

Request and answer bodies are the pydantic models of `payloads` and `answers`: their JSON Schema
(the same schema that validates requests) is put under components/schemas, so the document
cannot say something the app does not do."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from altmesh_dashboard import __version__
from altmesh_dashboard.answers import (
    ErrorAnswer,
    EventsAnswer,
    HeartbeatAnswer,
    RegisterAnswer,
    RelayList,
    ServiceAnswer,
    WithdrawAnswer,
)
from altmesh_dashboard.payloads import (
    EventBatch,
    HeartbeatReport,
    Registration,
    ServiceRegistration,
    ServiceWithdrawal,
)

REF = "#/components/schemas/{model}"
REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    Registration,
    HeartbeatReport,
    EventBatch,
    ServiceRegistration,
    ServiceWithdrawal,
)
ANSWER_MODELS: tuple[type[BaseModel], ...] = (
    ErrorAnswer,
    RegisterAnswer,
    HeartbeatAnswer,
    EventsAnswer,
    RelayList,
    ServiceAnswer,
    WithdrawAnswer,
)

ERROR_MEANINGS = {
    400: "the body is not valid JSON",
    401: "missing, unknown or revoked token (or not logged in)",
    403: "the token is for another relay or name, or the role is too low",
    409: "a conflict: the relay has not registered yet, or the name is taken in the zone",
    413: "the body is larger than API_MAX_BODY_BYTES",
    415: "the body is not application/json",
    422: "a field is missing or invalid; `field` names it",
    502: "the DNS server refused or failed the update; `error` says why",
    503: "DNS management is not configured on the dashboard",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _errors(*codes: int) -> dict[str, Any]:
    return {
        str(code): {
            "description": ERROR_MEANINGS[code],
            "content": {"application/json": {"schema": _ref(ErrorAnswer)}},
        }
        for code in codes
    }


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


TOKEN_ERRORS = (400, 401, 413, 415, 422)


def component_schemas() -> dict[str, Any]:
    """Every model's JSON Schema, requests in their validation form, answers in their
    serialization form, with references between them under components/schemas."""
    pairs = [(model, "validation") for model in REQUEST_MODELS] + [
        (model, "serialization") for model in ANSWER_MODELS
    ]
    _keys, top = models_json_schema(pairs, ref_template=REF)  # type: ignore[arg-type]
    schemas: dict[str, Any] = top.get("$defs", {})
    return schemas


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "altmesh dashboard API",
            "version": __version__,
            "description": "Relays register and send heartbeats and security events with their "
            "relay token; services publish their name with a service token; people read relay "
            "status with their login session. docs/dashboard-api.md describes every endpoint.",
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {
                "relayToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a relay's token (amr_...) from `flask --app "
                    "altmesh_dashboard tokens create RELAY`",
                },
                "serviceToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a service's token (ams_...), scoped to one name, from "
                    "`flask --app altmesh_dashboard tokens create --service NAME`",
                },
                "session": {"type": "apiKey", "in": "cookie", "name": "altmesh_session"},
            },
            "schemas": component_schemas(),
        },
        "paths": {
            "/relays/register": {
                "post": {
                    "operationId": "registerRelay",
                    "summary": "Register a relay or update its key, address and endpoints",
                    "security": [{"relayToken": []}],
                    "requestBody": _body(Registration),
                    "responses": {
                        "200": _json(RegisterAnswer, "updated"),
                        "201": _json(RegisterAnswer, "registered"),
                        **_errors(*TOKEN_ERRORS, 403, 409),
                    },
                }
            },
            "/relays/heartbeat": {
                "post": {
                    "operationId": "relayHeartbeat",
                    "summary": "Report load, streams, bytes, links, attached nodes and version",
                    "security": [{"relayToken": []}],
                    "requestBody": _body(HeartbeatReport),
                    "responses": {
                        "200": _json(HeartbeatAnswer, "recorded; the relay's state"),
                        **_errors(*TOKEN_ERRORS, 409),
                    },
                }
            },
            "/relays/events": {
                "post": {
                    "operationId": "relayEvents",
                    "summary": "Send a batch of security events (ids make re-sending safe)",
                    "security": [{"relayToken": []}],
                    "requestBody": _body(EventBatch),
                    "responses": {
                        "202": _json(EventsAnswer, "stored; events already stored are counted"),
                        **_errors(*TOKEN_ERRORS, 409),
                    },
                }
            },
            "/relays": {
                "get": {
                    "operationId": "listRelays",
                    "summary": "Every relay with its state",
                    "security": [{"session": []}],
                    "responses": {"200": _json(RelayList, "relays, by name"), **_errors(401)},
                }
            },
            "/services/register": {
                "post": {
                    "operationId": "registerService",
                    "summary": "Publish the token's name: its AAAA and key TXT records",
                    "security": [{"serviceToken": []}],
                    "requestBody": _body(ServiceRegistration),
                    "responses": {
                        "200": _json(ServiceAnswer, "published (or already so)"),
                        "201": _json(ServiceAnswer, "published for the first time"),
                        **_errors(*TOKEN_ERRORS, 403, 409, 502, 503),
                    },
                }
            },
            "/services/withdraw": {
                "post": {
                    "operationId": "withdrawService",
                    "summary": "Remove the token's name from the zone",
                    "security": [{"serviceToken": []}],
                    "requestBody": _body(ServiceWithdrawal),
                    "responses": {
                        "200": _json(WithdrawAnswer, "withdrawn (or was not published)"),
                        **_errors(*TOKEN_ERRORS, 403, 502, 503),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapiDocument",
                    "summary": "This document",
                    "security": [{"session": []}],
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_errors(401),
                    },
                }
            },
        },
    }
