"""Security events as JSON lines with stable field names (documented in docs/security-events.md).

One event per line: `{"time": ..., "event": ..., "node": ..., "reason": ..., ...}`. Field names
and event names never change meaning; new fields may be added. Nothing secret is ever logged:
public keys and addresses only.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

HANDSHAKE_FAILED = "handshake_failed"
KEY_REFUSED = "key_refused"
HANDSHAKE_REPLAYED = "handshake_replayed"
DECRYPTION_FAILED = "decryption_failed"
RATE_LIMITED = "rate_limited"
REKEY = "rekey"
KEY_ROTATION = "key_rotation"
PROTOCOL_VIOLATION = "protocol_violation"
E2E_REFUSED = "e2e_refused"
E2E_TRUNCATED = "e2e_truncated"

EVENT_NAMES = (
    HANDSHAKE_FAILED,
    KEY_REFUSED,
    HANDSHAKE_REPLAYED,
    DECRYPTION_FAILED,
    RATE_LIMITED,
    REKEY,
    KEY_ROTATION,
    PROTOCOL_VIOLATION,
    E2E_REFUSED,
    E2E_TRUNCATED,
)

# Fields every event carries, in this order; others follow.
BASE_FIELDS = ("time", "event", "node", "reason")


def event_for_protocol_error(error: BaseException, during_handshake: bool = False) -> str:
    """Which security event a fatal ProtocolError from the core stands for."""
    from altmesh.protocol import errors

    if isinstance(error, errors.EndToEndTruncated):
        return E2E_TRUNCATED
    if isinstance(error, errors.ReplayedHandshake):
        return HANDSHAKE_REPLAYED
    if isinstance(error, errors.KeyRefused):
        return KEY_REFUSED
    if during_handshake or isinstance(error, errors.HandshakeError | errors.HandshakeDecryptError):
        return HANDSHAKE_FAILED
    if isinstance(error, errors.DecryptError):
        return DECRYPTION_FAILED
    return PROTOCOL_VIOLATION


class SecurityEventLog:
    """Writes security events to a file (append, line-buffered) or to stderr."""

    def __init__(
        self,
        path: Path | None,
        node: str,
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        self.path = path
        self.node = node
        self.on_event = on_event
        self._lock = threading.Lock()
        self._stream: IO[str] = sys.stderr
        self._owned = False
        self.reopen()

    def reopen(self) -> None:
        """(Re)open the file, e.g. after log rotation on SIGHUP."""
        with self._lock:
            if self._owned:
                self._stream.close()
            if self.path is None:
                self._stream, self._owned = sys.stderr, False
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._stream = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
                self._owned = True

    def emit(self, event: str, reason: str = "", **fields: Any) -> dict[str, Any]:
        record: dict[str, Any] = {
            "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds"),
            "event": event,
            "node": self.node,
            "reason": reason or event,
        }
        for name, value in fields.items():
            if value is not None:
                record[name] = value if isinstance(value, int | float | bool) else str(value)
        line = json.dumps(record, separators=(",", ":"), sort_keys=False)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()
        if self.on_event is not None:
            self.on_event(event, record["reason"])
        return record

    def close(self) -> None:
        with self._lock:
            if self._owned:
                self._stream.close()
                self._owned = False
                self._stream = sys.stderr
