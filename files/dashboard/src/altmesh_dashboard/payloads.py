"""The JSON API's bodies, as pydantic models: one schema for validating requests and for the
OpenAPI document (`openapi.py` builds it from these classes, so the two cannot drift apart).

Every check names the field and what is wrong (`PayloadError`: `field` like `links[0].state`), so
a sender can be fixed from the error alone. Beyond what JSON Schema can say, the models refuse
what the database or DNS would choke on later: NUL characters and lone surrogates in strings,
NaN in free-form details, times outside what a UTC timestamp can hold, scoped IPv6 addresses, and
an overlay address that is not the address of the key beside it (`altmesh.protocol.address`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import math
import re
from typing import Annotated, Any, Literal, TypeVar

from altmesh.protocol.address import network_prefix, node_address
from altmesh.protocol.keys import decode_key, encode_key
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

LABEL_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
LABEL = re.compile(LABEL_PATTERN)
HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
EVENT_KIND_PATTERN = r"^[a-z][a-z0-9_.]{0,63}$"
EVENT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
LINK_STATES = ("up", "connecting", "down")
SEVERITIES = ("info", "warning", "critical")
MAX_ENDPOINTS = 16
MAX_LINKS = 256
MAX_ATTACHED = 10000
MAX_EVENTS = 500
MAX_EVENT_DETAIL_BYTES = 4096
MAX_DETAIL_DEPTH = 16
MAX_COUNTER = 2**63 - 1
# A gauge stored in a 32-bit integer column (PostgreSQL INTEGER); far above any real
# relay (max_links x streams per link), and a larger value is refused with 422, not a 500.
MAX_ACTIVE_STREAMS = 2**31 - 1
MAX_RTT_MS = 600_000.0
RESERVED_NAMES = frozenset({"mesh", "mesh.svg", "tokens"})  # paths under /relays/
KEY_DESCRIPTION = "standard base64 (with padding) of the 32-byte X25519 static public key"


class PayloadError(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


# ------------------------------------------------------------------ field rules


def clean_text(value: str) -> str:
    """A string the databases can store and a log can show: no NUL (PostgreSQL refuses it in
    text), no lone surrogate (not encodable as UTF-8), no other control character."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    return value


def _relay_name(value: str) -> str:
    if value in RESERVED_NAMES:
        raise ValueError(f"{value!r} is reserved by the dashboard; choose another name")
    return value


def _public_key(value: str) -> str:
    try:
        return encode_key(decode_key(value))  # the one key codec; stored in canonical form
    except ValueError as error:
        raise ValueError(f"must be the {KEY_DESCRIPTION}: {error}") from None


def overlay_address(value: str) -> str:
    """An overlay (ULA) IPv6 address in canonical form; never one with a zone id."""
    if "%" in value:
        raise ValueError("must be an IPv6 address without a zone id (no %...)")
    try:
        address = ipaddress.IPv6Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv6 address") from None
    return str(address)


def _endpoint_host(value: str) -> str:
    """An IP address a peer can reach (not scoped, link-local, multicast or unspecified), or a
    host name of LDH labels of 1-63 characters, 253 at most in all."""
    if "%" in value:
        raise ValueError("must not carry a zone id (%...): a scoped address is not reachable")
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        if address.is_unspecified or address.is_multicast or address.is_link_local:
            raise ValueError(
                f"{value} is an unspecified, multicast or link-local address: peers cannot reach "
                "it; give a routable address or a host name"
            )
        return str(address)
    name = value[:-1] if value.endswith(".") else value
    labels = name.split(".")
    if len(name) > 253 or not all(HOST_LABEL.match(label) for label in labels):
        raise ValueError(
            "must be an IP address or a host name of dot-separated labels of 1 to 63 letters, "
            "digits and '-' (253 characters at most)"
        )
    return name


def _event_time(value: dt.datetime) -> dt.datetime:
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("is outside the range of times that can be stored") from None


def _detail(value: dict[str, Any]) -> dict[str, Any]:
    _check_detail(value, 0)
    size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode())
    if size > MAX_EVENT_DETAIL_BYTES:
        raise ValueError(f"must be at most {MAX_EVENT_DETAIL_BYTES} bytes as JSON, got {size}")
    return value


def _check_detail(value: Any, depth: int) -> None:
    if depth > MAX_DETAIL_DEPTH:
        raise ValueError(f"must not nest deeper than {MAX_DETAIL_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must not hold NaN or Infinity (JSON has no such numbers)")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not hold NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_detail(key, depth + 1)
            _check_detail(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_detail(item, depth + 1)


RelayName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        pattern=LABEL_PATTERN,
        description="one DNS label: lower-case letters, digits and '-'; not mesh, mesh.svg or "
        "tokens",
    ),
    AfterValidator(_relay_name),
]
PublicKey = Annotated[
    str,
    Field(min_length=44, max_length=44, description=KEY_DESCRIPTION),
    AfterValidator(_public_key),
]
OverlayAddress = Annotated[
    str,
    Field(
        min_length=2,
        max_length=45,
        json_schema_extra={"format": "ipv6"},
        description="an overlay IPv6 address (no zone id)",
    ),
    AfterValidator(overlay_address),
]
Text = Annotated[str, AfterValidator(clean_text)]


class _Body(BaseModel):
    """Unknown fields are refused (a sender's typo is noticed), types are not coerced ("0.5" is
    not a number), NaN and Infinity are not numbers."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def _check_address_names_key(address: str, public_key: str, info: ValidationInfo) -> None:
    """`address` must be the key's address (altmesh.protocol.address.node_address) in the
    network's prefix: NETWORK_PREFIX when configured, else the address's own /48, which must
    then be an RFC 4193 prefix. Clients refuse a name whose AAAA does not name its key."""
    configured = (info.context or {}).get("network_prefix")
    parsed = ipaddress.IPv6Address(address)
    if configured is not None:
        prefix = configured
        if parsed not in prefix:
            raise PayloadError("address", f"must be inside the network's prefix {prefix}")
    else:
        try:
            prefix = network_prefix(str(ipaddress.IPv6Network(f"{parsed}/48", strict=False)))
        except ValueError as error:
            raise PayloadError("address", str(error)) from None
    expected = node_address(prefix, decode_key(public_key))
    if parsed != expected:
        raise PayloadError(
            "address",
            f"{address} is not the address of this public key in {prefix}: it is {expected} "
            "(an address names its key)",
        )


# --------------------------------------------------------------------- relays


class Endpoint(_Body):
    host: Annotated[
        str,
        Field(
            min_length=1,
            max_length=253,
            description="IP address (not link-local, multicast, unspecified or scoped) or host "
            "name where peers and clients reach the relay",
        ),
        AfterValidator(_endpoint_host),
    ]
    port: int = Field(ge=1, le=65535)


class Registration(_Body):
    """`POST /relays/register`: the relay's name (the token's), key, address and endpoints."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "relay-1",
                    "public_key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                    "address": "fd12:3456:789a:283b:28d:6214:4a0d:4b7e",
                    "endpoints": [{"host": "198.51.100.7", "port": 7000}],
                }
            ]
        }
    )

    name: RelayName
    public_key: PublicKey
    address: Annotated[
        OverlayAddress,
        Field(description="the relay's overlay address: node_address(prefix, public_key)"),
    ]
    endpoints: list[Endpoint] = Field(min_length=1, max_length=MAX_ENDPOINTS)

    @model_validator(mode="after")
    def _address_names_key(self, info: ValidationInfo) -> Registration:
        _check_address_names_key(self.address, self.public_key, info)
        return self


class LinkReport(_Body):
    peer: Annotated[RelayName, Field(description="the peer relay's name")]
    state: Literal["up", "connecting", "down"]
    rtt_ms: float | None = Field(default=None, ge=0.0, le=MAX_RTT_MS)


class HeartbeatReport(_Body):
    """`POST /relays/heartbeat`: load, counters, links to mesh peers, attached nodes."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "load": 0.42,
                    "active_streams": 17,
                    "bytes_in": 123456,
                    "bytes_out": 654321,
                    "version": "0.1.0",
                    "links": [
                        {"peer": "relay-2", "state": "up", "rtt_ms": 3.2},
                        {"peer": "relay-3", "state": "down", "rtt_ms": None},
                    ],
                    "attached": ["fd12:3456:789a:759:4c88:1f66:6aad:59f6"],
                }
            ]
        }
    )

    load: float = Field(ge=0.0, le=1.0, description="fraction of the relay's capacity in use")
    active_streams: int = Field(ge=0, le=MAX_ACTIVE_STREAMS)
    bytes_in: int = Field(ge=0, le=MAX_COUNTER, description="bytes received since start")
    bytes_out: int = Field(ge=0, le=MAX_COUNTER, description="bytes sent since start")
    version: Annotated[Text, Field(min_length=1, max_length=64)]
    links: list[LinkReport] = Field(default_factory=list, max_length=MAX_LINKS)
    attached: list[OverlayAddress] = Field(
        default_factory=list,
        max_length=MAX_ATTACHED,
        description="overlay addresses of the clients and services attached to the relay",
    )

    @field_validator("links")
    @classmethod
    def _each_peer_once(cls, links: list[LinkReport]) -> list[LinkReport]:
        seen: set[str] = set()
        for index, link in enumerate(links):
            if link.peer in seen:
                raise PayloadError(f"links[{index}].peer", f"{link.peer!r} is listed twice")
            seen.add(link.peer)
        return links

    @field_validator("attached")
    @classmethod
    def _each_address_once(cls, attached: list[str]) -> list[str]:
        seen: set[str] = set()
        for index, address in enumerate(attached):
            if address in seen:
                raise PayloadError(f"attached[{index}]", f"{address} is listed twice")
            seen.add(address)
        return attached


class EventReport(_Body):
    id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            pattern=EVENT_ID_PATTERN,
            description="the relay's id of the event, unique per relay: a re-sent event with "
            "an id already stored is counted as a duplicate and not stored again",
        ),
    ]
    time: Annotated[
        AwareDatetime,
        Field(description="when it happened, RFC 3339 with a zone: 2026-01-31T12:00:00Z"),
        AfterValidator(_event_time),
    ]
    kind: str = Field(min_length=1, max_length=64, pattern=EVENT_KIND_PATTERN)
    severity: Literal["info", "warning", "critical"] = "warning"
    peer: Annotated[Text, Field(min_length=1, max_length=128)] | None = Field(
        default=None, description="the remote party, e.g. 198.51.100.7:4444"
    )
    detail: Annotated[
        dict[str, Any],
        Field(description=f"free-form, at most {MAX_EVENT_DETAIL_BYTES} bytes as JSON"),
        AfterValidator(_detail),
    ] = Field(default_factory=dict)


class EventBatch(_Body):
    """`POST /relays/events`: 1-500 security events with ids."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "id": "r1-000184",
                            "time": "2026-01-31T12:00:00Z",
                            "kind": "handshake_failed",
                            "severity": "warning",
                            "peer": "198.51.100.7:4444",
                            "detail": {"reason": "bad MAC", "count": 3},
                        },
                        {"id": "r1-000185", "time": "2026-01-31T12:00:01+00:00", "kind": "rekey"},
                    ]
                }
            ]
        }
    )

    events: list[EventReport] = Field(min_length=1, max_length=MAX_EVENTS)


# ------------------------------------------------------------------- services


def service_name(value: str, zone: str) -> str:
    """A service's name as an absolute, lower-case DNS name strictly inside `zone` ("web.alt"
    and "web.alt." are the same name); ValueError saying what is wrong otherwise."""
    text = value.strip().lower()
    if not text:
        raise ValueError("is required")
    absolute = text if text.endswith(".") else text + "."
    origin = zone.lower()
    if absolute == origin or not absolute.endswith("." + origin):
        raise ValueError(f"must be a name inside the zone {origin}, such as web.{origin}")
    labels = absolute[: -len(origin) - 1].split(".")
    if len(absolute) > 254 or not all(LABEL.match(label) for label in labels):
        raise ValueError(
            "must be dot-separated labels of 1 to 63 lower-case letters, digits and '-'"
        )
    return absolute


def _service_name_in_zone(value: str, info: ValidationInfo) -> str:
    zone = str((info.context or {}).get("zone") or "alt.")
    return service_name(value, zone)


class ServiceRegistration(_Body):
    """`POST /services/register`: publish the token's name with this key and address."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "web.alt",
                    "public_key": "ZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGQ=",
                    "address": "fd12:3456:789a:759:4c88:1f66:6aad:59f6",
                }
            ]
        }
    )

    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=254,
            description="the service's name in the zone (web.alt or web.alt.): the token's name",
        ),
        AfterValidator(_service_name_in_zone),
    ]
    public_key: PublicKey
    address: Annotated[
        OverlayAddress,
        Field(description="the service's overlay address: node_address(prefix, public_key)"),
    ]

    @model_validator(mode="after")
    def _address_names_key(self, info: ValidationInfo) -> ServiceRegistration:
        _check_address_names_key(self.address, self.public_key, info)
        return self


class ServiceWithdrawal(_Body):
    """`POST /services/withdraw`: remove the token's name from the zone."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "web.alt"}]})

    name: Annotated[
        str,
        Field(min_length=1, max_length=254, description="the token's name"),
        AfterValidator(_service_name_in_zone),
    ]


# ------------------------------------------------------------------ parsing


def field_of(location: tuple[int | str, ...]) -> str:
    """`("links", 0, "state")` -> `links[0].state`; the empty location is the body itself."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "body"


def _problem(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "model_type" or kind == "model_attributes_type":
        return "must be a JSON object"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], body: bytes, **context: Any) -> M:
    """Validate a JSON body against `model`; PayloadError naming the first bad field. The JSON is
    parsed by pydantic itself (strict JSON: no NaN, no lone surrogates, no trailing garbage)."""
    try:
        return model.model_validate_json(body, context=context)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, PayloadError):
            raise cause from None
        if first["type"] == "json_invalid":
            raise PayloadError("body", f"is not valid JSON: {first['msg']}") from None
        raise PayloadError(field_of(tuple(first["loc"])), _problem(dict(first))) from None


def relay_name(value: Any, field: str = "name") -> str:
    """A relay name typed outside the API (CLI, tokens page): PayloadError naming `field`."""
    if not isinstance(value, str):
        raise PayloadError(field, "must be a string")
    if not value or len(value) > 63:
        raise PayloadError(field, "must be 1 to 63 characters")
    if not LABEL.match(value):
        raise PayloadError(field, "must be one DNS label: lower-case letters, digits and '-'")
    try:
        return _relay_name(value)
    except ValueError as error:
        raise PayloadError(field, str(error)) from None
