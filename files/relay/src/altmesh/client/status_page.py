"""The local status page of `altmesh up` / `altmesh serve` (off unless `client.status_page`).

A small HTTP/1.1 server on a loopback address: `GET /` is the page (HTML with its script and
style inline, each carrying the response's CSP nonce; no data in it), `GET /api/status` the
node's state as JSON, which the page's script polls every second.

What guards it, since every local program and every web page in a local browser can reach a
loopback port:
- **A token** made at start (`secrets.token_urlsafe(32)`, never logged, never written to disk):
  `/api/status` answers only with `Authorization: Bearer <token>`. The page is opened at
  `http://HOST:PORT/#token=<token>` (`altmesh status --page-url` prints it); the fragment never
  leaves the browser, so the token is in no request line, log or Referer. The script keeps it in
  sessionStorage and removes it from the address bar.
- **The Host header** must name the page's own loopback address (`127.0.0.1:PORT`,
  `localhost:PORT`, `[::1]:PORT`): a page of another site whose name an attacker points at
  127.0.0.1 (DNS rebinding) gets 403 and no data.
- **A strict Content-Security-Policy** with a fresh nonce per response: no script or style but
  the page's own inline ones, requests only to the page's origin, no frames, no forms, and
  nothing loaded from anywhere else (the page has no external assets).
- Bounded requests: the head must arrive within REQUEST_TIMEOUT and fit in MAX_HEAD bytes; at
  most MAX_CONNECTIONS at once; one request per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from importlib import resources
from typing import Any

from altmesh.config import HostPort

log = logging.getLogger("altmesh.client.status_page")

MAX_HEAD = 8 * 1024
REQUEST_TIMEOUT = 5.0
MAX_CONNECTIONS = 32
LINGER = 0.5  # seconds a connection is read (and dropped) after the answer; at most ...
LINGER_READS = 16  # ... this many reads of MAX_HEAD
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
}


def _asset(name: str) -> str:
    return resources.files("altmesh.client").joinpath(name).read_text(encoding="utf-8")


def allowed_hosts(listen: HostPort) -> frozenset[str]:
    """The Host header values the page answers to: its own loopback address and port."""
    port = listen.port
    names = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    if listen.host not in ("127.0.0.1", "localhost", "::1"):
        names.add(f"[{listen.host}]:{port}" if ":" in listen.host else f"{listen.host}:{port}")
    if port == 80:
        names |= {"127.0.0.1", "localhost", "[::1]"}
    return frozenset(names)


def content_security_policy(nonce: str) -> str:
    return (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; "
        f"style-src 'nonce-{nonce}'; "
        "connect-src 'self'; "
        "img-src 'none'; "
        "base-uri 'none'; "
        "form-action 'none'; "
        "frame-ancestors 'none'"
    )


class StatusPage:
    """The page's server; `status()` gives the JSON it serves (called per request)."""

    def __init__(self, listen: HostPort, status: Callable[[], dict[str, Any]]) -> None:
        self.listen = listen
        self.status = status
        self.token = secrets.token_urlsafe(32)
        self.hosts = allowed_hosts(listen)
        self._template = _asset("status_page.html")
        self._script = _asset("status_page.js")
        self._style = _asset("status_page.css")
        self._server: asyncio.AbstractServer | None = None
        self._active = 0

    @property
    def url(self) -> str:
        host = f"[{self.listen.host}]" if ":" in self.listen.host else self.listen.host
        return f"http://{host}:{self.listen.port}/"

    @property
    def url_with_token(self) -> str:
        return f"{self.url}#token={self.token}"

    async def start(self) -> asyncio.AbstractServer:
        self._server = await asyncio.start_server(
            self._connection, self.listen.host, self.listen.port, limit=MAX_HEAD
        )
        log.info(
            "status page on %s (open the address `altmesh status --page-url` prints)", self.url
        )
        return self._server

    # ------------------------------------------------------------------ one request

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._active >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        self._active += 1
        try:
            await self._serve_one(reader, writer)
            await _linger(reader, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            self._active -= 1
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await self._send(writer, 431, "text/plain", b"request head too large\n")
            return
        except (asyncio.IncompleteReadError, TimeoutError):
            return
        parsed = parse_head(head)
        if parsed is None:
            await self._send(writer, 400, "text/plain", b"bad request\n")
            return
        method, target, headers = parsed
        if headers.get("host", "").lower() not in self.hosts:
            # DNS rebinding: another site's name pointed at this address.
            await self._send(
                writer, 403, "text/plain", b"this page answers only to its loopback address\n"
            )
            return
        if method not in ("GET", "HEAD"):
            await self._send(writer, 405, "text/plain", b"GET only\n", extra={"Allow": "GET, HEAD"})
            return
        path = target.split("?", 1)[0]
        head_only = method == "HEAD"
        if path == "/":
            nonce = secrets.token_urlsafe(18)
            page = (
                self._template.replace("{nonce}", nonce)
                .replace("/*style*/", self._style)
                .replace("/*script*/", self._script)
            )
            await self._send(
                writer,
                200,
                "text/html; charset=utf-8",
                page.encode(),
                extra={"Content-Security-Policy": content_security_policy(nonce)},
                head_only=head_only,
            )
        elif path == "/api/status":
            if not self._authorized(headers.get("authorization", "")):
                await self._send(
                    writer,
                    401,
                    "application/json",
                    b'{"error": "token missing or wrong"}\n',
                    extra={"WWW-Authenticate": 'Bearer realm="altmesh status"'},
                    head_only=head_only,
                )
                return
            body = json.dumps(self.status(), default=str).encode()
            await self._send(writer, 200, "application/json", body, head_only=head_only)
        else:
            await self._send(writer, 404, "text/plain", b"not found\n", head_only=head_only)

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.strip().encode(), self.token.encode())

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        content_type: str,
        body: bytes,
        *,
        extra: dict[str, str] | None = None,
        head_only: bool = False,
    ) -> None:
        headers = {
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Cross-Origin-Resource-Policy": "same-origin",
            "Connection": "close",
            **(extra or {}),
        }
        if "Content-Security-Policy" not in headers:
            headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
        lines = [f"HTTP/1.1 {status} {_REASONS[status]}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            writer.write(body)
        await writer.drain()


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After the answer: end our side, and read (and drop) what the client still sends for a
    moment, so that closing with unread input does not reset the connection before the client
    read the answer (a refused oversized request, say)."""
    if writer.can_write_eof():
        writer.write_eof()
    with contextlib.suppress(TimeoutError, ValueError, asyncio.LimitOverrunError):
        async with asyncio.timeout(LINGER):
            for _ in range(LINGER_READS):
                if not await reader.read(MAX_HEAD):
                    break


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    """Request line and headers (names lower case); None when malformed: not HTTP/1.x, a target
    that is not a path, a folded or nameless header, or more than one Host."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    method, target, _version = parts
    if not method.isalpha() or not target.startswith("/"):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t" or ":" not in line:
            return None
        raw_name, _, value = line.partition(":")
        if not raw_name or raw_name != raw_name.strip() or " " in raw_name:
            return None  # RFC 9112 5.1: no whitespace in or after a field name
        name = raw_name.lower()
        if name == "host" and name in headers:
            return None
        headers[name] = value.strip()
    return method, target, headers
