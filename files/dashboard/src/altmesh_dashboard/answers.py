"""The JSON API's answers, as pydantic models: the OpenAPI document's response schemas come from
here, and the views build their answers with them (the heartbeat, on the hot path, builds the same
shape by hand; the schemathesis run checks every answer against these schemas)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorAnswer(_Answer):
    """Every error: what is wrong, and for validation errors which field."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "links[0].state: Input should be 'up', 'connecting' or 'down'",
                    "field": "links[0].state",
                }
            ]
        }
    )

    error: str
    field: str | None = Field(default=None, description="the offending field, when there is one")


class EndpointView(_Answer):
    host: str
    port: int


class LinkView(_Answer):
    peer: str
    state: Literal["up", "connecting", "down"]
    rtt_ms: float | None


class RelayView(_Answer):
    """A relay's registration and status."""

    name: str
    public_key: str
    address: str
    endpoints: list[EndpointView]
    state: Literal["up", "stale", "down"]
    last_heartbeat_at: str | None = Field(description="RFC 3339, UTC")
    load: float | None
    active_streams: int | None
    bytes_in: int | None
    bytes_out: int | None
    version: str | None
    links: list[LinkView]
    attached: int = Field(description="how many nodes the last heartbeat listed as attached")


class RegisterAnswer(_Answer):
    relay: RelayView
    dns: str = Field(
        description="published, not configured, unavailable, or failed: <reason> (a DNS "
        "failure does not fail the registration)"
    )


class HeartbeatAnswer(_Answer):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"state": "up", "heartbeat_interval_seconds": 30}]}
    )

    state: Literal["up", "stale", "down"]
    heartbeat_interval_seconds: int = Field(ge=1, description="send the next one within this")


class EventsAnswer(_Answer):
    model_config = ConfigDict(json_schema_extra={"examples": [{"accepted": 2, "duplicates": 0}]})

    accepted: int = Field(ge=0, description="events stored by this request")
    duplicates: int = Field(ge=0, description="events whose id was already stored (not again)")


class RelayList(_Answer):
    relays: list[RelayView]


class ServiceView(_Answer):
    name: str = Field(description="absolute, e.g. web.alt.")
    public_key: str
    address: str


class ServiceAnswer(_Answer):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "service": {
                        "name": "web.alt.",
                        "public_key": "ZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGQ=",
                        "address": "fd12:3456:789a:759:4c88:1f66:6aad:59f6",
                    },
                    "dns": "published",
                    "changed": True,
                }
            ]
        }
    )

    service: ServiceView
    dns: Literal["published"]
    changed: bool = Field(description="false when the zone already held exactly these records")


class WithdrawAnswer(_Answer):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "web.alt.", "dns": "withdrawn", "changed": True}]}
    )

    name: str
    dns: Literal["withdrawn"]
    changed: bool = Field(description="false when nothing of the name was published")
