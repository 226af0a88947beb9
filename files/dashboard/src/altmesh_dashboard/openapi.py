"""The OpenAPI 3.1 description of the JSON API, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from altmesh_dashboard import __version__
from altmesh_dashboard.payloads import (
    LINK_STATES,
    MAX_ENDPOINTS,
    MAX_EVENTS,
    MAX_LINKS,
    SEVERITIES,
)

_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*codes: int) -> dict[str, Any]:
    meaning = {
        400: "the body is not valid JSON",
        401: "missing, unknown or revoked token (or not logged in)",
        403: "the token belongs to another relay, or the role is too low",
        409: "the relay has not registered yet",
        413: "the body is larger than API_MAX_BODY_BYTES",
        415: "the body is not application/json",
        422: "a field is missing or invalid; `field` names it",
    }
    return {
        str(code): {
            "description": meaning[code],
            "content": {"application/json": {"schema": _ERROR}},
        }
        for code in codes
    }


def _json_body(schema: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


RELAY_ERRORS = (400, 401, 413, 415, 422)


def _relay_answer(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "relay": {"$ref": "#/components/schemas/Relay"},
                        "dns": {
                            "type": "string",
                            "description": "published, not configured, unavailable or "
                            "failed: <reason>",
                        },
                    },
                }
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    name = {"type": "string", "pattern": "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "altmesh dashboard API",
            "version": __version__,
            "description": "Relays register, send heartbeats and security events with their "
            "API token. People read relay status with their login session.",
        },
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {
                "relayToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "per-relay token from `flask --app altmesh_dashboard tokens "
                    "create RELAY`",
                },
                "session": {"type": "apiKey", "in": "cookie", "name": "altmesh_session"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "field": {"type": "string", "description": "the offending field"},
                    },
                },
                "Registration": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "public_key", "address", "endpoints"],
                    "properties": {
                        "name": name,
                        "public_key": {
                            "type": "string",
                            "description": "base64 of the relay's 32-byte X25519 static key",
                        },
                        "address": {
                            "type": "string",
                            "format": "ipv6",
                            "description": "inside NETWORK_PREFIX when one is configured",
                        },
                        "endpoints": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_ENDPOINTS,
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["host", "port"],
                                "properties": {
                                    "host": {"type": "string"},
                                    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                                },
                            },
                        },
                    },
                },
                "Heartbeat": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["load", "active_streams", "bytes_in", "bytes_out", "version"],
                    "properties": {
                        "load": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 1,
                            "description": "fraction of the relay's capacity in use",
                        },
                        "active_streams": {"type": "integer", "minimum": 0},
                        "bytes_in": {"type": "integer", "minimum": 0},
                        "bytes_out": {"type": "integer", "minimum": 0},
                        "version": {"type": "string", "maxLength": 64},
                        "links": {
                            "type": "array",
                            "maxItems": MAX_LINKS,
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["peer", "state"],
                                "properties": {
                                    "peer": name,
                                    "state": {"enum": list(LINK_STATES)},
                                    "rtt_ms": {"type": ["number", "null"], "minimum": 0},
                                },
                            },
                        },
                    },
                },
                "EventBatch": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["events"],
                    "properties": {
                        "events": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_EVENTS,
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["time", "kind"],
                                "properties": {
                                    "time": {"type": "string", "format": "date-time"},
                                    "kind": {
                                        "type": "string",
                                        "pattern": "^[a-z][a-z0-9_.]{0,63}$",
                                    },
                                    "severity": {"enum": list(SEVERITIES), "default": "warning"},
                                    "peer": {"type": ["string", "null"]},
                                    "detail": {"type": "object"},
                                },
                            },
                        }
                    },
                },
                "Relay": {
                    "type": "object",
                    "description": "a relay's registration and status",
                    "properties": {
                        "name": name,
                        "public_key": {"type": "string"},
                        "address": {"type": "string", "format": "ipv6"},
                        "endpoints": {"type": "array", "items": {"type": "object"}},
                        "state": {"enum": ["up", "stale", "down"]},
                        "last_heartbeat_at": {"type": ["string", "null"], "format": "date-time"},
                        "load": {"type": ["number", "null"]},
                        "active_streams": {"type": ["integer", "null"]},
                        "version": {"type": ["string", "null"]},
                        "links": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "peer": name,
                                    "state": {"enum": list(LINK_STATES)},
                                    "rtt_ms": {"type": ["number", "null"]},
                                },
                            },
                        },
                    },
                },
            },
        },
        "paths": {
            "/relays/register": {
                "post": {
                    "summary": "Register a relay or update its key, address and endpoints",
                    "security": [{"relayToken": []}],
                    "requestBody": _json_body("Registration"),
                    "responses": {
                        "200": _relay_answer("updated"),
                        "201": _relay_answer("registered"),
                        **_errors(*RELAY_ERRORS, 403),
                    },
                }
            },
            "/relays/heartbeat": {
                "post": {
                    "summary": "Report load, streams, bytes, links and version",
                    "security": [{"relayToken": []}],
                    "requestBody": _json_body("Heartbeat"),
                    "responses": {
                        "200": {"description": "recorded; the body holds the relay's state"},
                        **_errors(*RELAY_ERRORS, 409),
                    },
                }
            },
            "/relays/events": {
                "post": {
                    "summary": "Send a batch of security events",
                    "security": [{"relayToken": []}],
                    "requestBody": _json_body("EventBatch"),
                    "responses": {
                        "202": {"description": "stored; `accepted` counts them"},
                        **_errors(*RELAY_ERRORS, 409),
                    },
                }
            },
            "/relays": {
                "get": {
                    "summary": "Every relay with its state",
                    "security": [{"session": []}],
                    "responses": {
                        "200": {
                            "description": "relays, by name",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "relays": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Relay"},
                                            }
                                        },
                                    }
                                }
                            },
                        },
                        **_errors(401),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [{"session": []}],
                    "responses": {"200": {"description": "OpenAPI 3.1"}, **_errors(401)},
                }
            },
        },
    }
