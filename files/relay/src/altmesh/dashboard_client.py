"""The dashboard's JSON API (docs/dashboard-api.md) as blocking calls, for relays and services.

One `DashboardClient` holds one `httpx.Client` (a connection pool, TLS verified against
`ca_file` when given, else the system's CAs) and is used from one thread: the relay's reporter
thread, or the service's publisher thread. Nothing here runs on an event loop.

Every failure is a `DashboardError` with a stable `kind` (the label of the failure metrics):

| kind | what happened |
| --- | --- |
| `unreachable` | no connection (refused, no route, DNS of the dashboard's host name failed) |
| `timeout` | no answer within `timeout_seconds` (connecting, sending or reading) |
| `tls` | the TLS handshake failed (certificate not trusted, wrong host name) |
| `auth` | 401 or 403: the token is missing, unknown, revoked, or not this node's |
| `not_registered` | 409 from a relay endpoint that needs a registration first |
| `conflict` | another 409 (a service name that is a relay's, a CNAME, below a delegation) |
| `refused` | another 4xx: the dashboard refused the body (its message is kept) |
| `server_error` | 5xx: the dashboard (or its DNS server) failed; worth retrying |
| `bad_answer` | a 2xx whose body is not the JSON the API documents |

The token is sent as `Authorization: Bearer ...` and appears in no message, log line or
exception: httpx's exceptions name the URL, never the headers, and messages here quote only the
dashboard's `error` field.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from altmesh.keyfile import read_secret_file

# httpx logs every request at INFO; the relay's log is for what matters to its operator.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

FAILURE_KINDS = (
    "unreachable",
    "timeout",
    "tls",
    "auth",
    "not_registered",
    "conflict",
    "refused",
    "server_error",
    "bad_answer",
)
# How much of an error answer is kept in a message (the dashboard's messages are one line).
MAX_MESSAGE = 300


class DashboardError(Exception):
    """A request that did not succeed; `kind` is one of FAILURE_KINDS."""

    def __init__(
        self, kind: str, message: str, status: int | None = None, field: str | None = None
    ) -> None:
        assert kind in FAILURE_KINDS, kind
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.field = field

    @property
    def retry_helps(self) -> bool:
        """Whether the same request may succeed later without anyone changing anything."""
        return self.kind in ("unreachable", "timeout", "server_error")


def read_token(path: Path) -> str:
    """The API token in `path` (mode 600; checked like a private key), without whitespace.

    Raises KeyFileError for a missing, unreadable or too open file."""
    return read_secret_file(path, "token").decode("utf-8", errors="replace").strip()


@dataclass(frozen=True)
class HeartbeatAnswer:
    state: str
    interval_seconds: float


@dataclass(frozen=True)
class EventsAnswer:
    accepted: int
    duplicates: int


class DashboardClient:
    """Blocking calls to one dashboard with one token; `close()` when done."""

    def __init__(
        self, url: str, token: str, *, ca_file: Path | None = None, timeout: float = 5.0
    ) -> None:
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            verify = ssl.create_default_context(cafile=str(ca_file))
        self.url = url.rstrip("/")
        self._token = token
        self._http = httpx.Client(
            base_url=self.url + "/api/v1",
            timeout=httpx.Timeout(timeout),
            verify=verify,
            follow_redirects=False,
            headers={"User-Agent": "altmesh"},
        )

    def set_token(self, token: str) -> None:
        """Use another token from the next request on (a token rotated on SIGHUP)."""
        self._token = token

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ relays
    def register_relay(self, registration: dict[str, Any]) -> dict[str, Any]:
        """POST /relays/register; the answer (`relay`, `dns`)."""
        return self._post("/relays/register", registration)

    def heartbeat(self, report: dict[str, Any]) -> HeartbeatAnswer:
        answer = self._post("/relays/heartbeat", report)
        interval = answer.get("heartbeat_interval_seconds")
        if not isinstance(interval, int | float) or isinstance(interval, bool) or interval <= 0:
            raise DashboardError("bad_answer", "heartbeat answer has no heartbeat_interval_seconds")
        return HeartbeatAnswer(str(answer.get("state", "")), float(interval))

    def send_events(self, events: list[dict[str, Any]]) -> EventsAnswer:
        answer = self._post("/relays/events", {"events": events})
        accepted, duplicates = answer.get("accepted"), answer.get("duplicates")
        if not isinstance(accepted, int) or not isinstance(duplicates, int):
            raise DashboardError("bad_answer", "events answer has no accepted/duplicates counts")
        return EventsAnswer(accepted, duplicates)

    # ---------------------------------------------------------------- services
    def register_service(self, name: str, public_key: str, address: str) -> dict[str, Any]:
        """POST /services/register; the answer (`service`, `dns`, `changed`)."""
        return self._post(
            "/services/register", {"name": name, "public_key": public_key, "address": address}
        )

    def withdraw_service(self, name: str) -> dict[str, Any]:
        """POST /services/withdraw; the answer (`name`, `dns`, `changed`)."""
        return self._post("/services/withdraw", {"name": name})

    # ---------------------------------------------------------------- internals
    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._http.post(
                path, json=body, headers={"Authorization": f"Bearer {self._token}"}
            )
        except httpx.TimeoutException:
            raise DashboardError(
                "timeout", f"{self.url}: no answer within {self._timeout():g} s"
            ) from None
        except httpx.ConnectError as error:
            if _is_tls_failure(error):
                raise DashboardError("tls", f"{self.url}: TLS failed: {_reason(error)}") from None
            raise DashboardError("unreachable", f"{self.url}: {_reason(error)}") from None
        except httpx.TransportError as error:
            raise DashboardError("unreachable", f"{self.url}: {_reason(error)}") from None
        return _answer(self.url + "/api/v1" + path, response)

    def _timeout(self) -> float:
        return float(self._http.timeout.read or 0.0)


def _answer(where: str, response: httpx.Response) -> dict[str, Any]:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if 200 <= status < 300:
        if not isinstance(body, dict):
            raise DashboardError("bad_answer", f"{where}: {status} answer is not a JSON object")
        return body
    message = ""
    field = None
    if isinstance(body, dict):
        message = str(body.get("error") or "")[:MAX_MESSAGE]
        field = str(body["field"]) if isinstance(body.get("field"), str) else None
    text = f"{where}: {status} {message or response.reason_phrase}"
    if status in (401, 403):
        kind = "auth"
    elif status == 409:
        kind = "not_registered" if "not registered" in message else "conflict"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "refused"
    raise DashboardError(kind, text, status, field)


def _is_tls_failure(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "SSL" in str(error) or "certificate" in str(error).lower()


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text[:MAX_MESSAGE]
