"""The send side of a link (docs/protocol.md sections 5 and 8): records are packed into
plaintexts of at most 65519 bytes and sealed under the current send key, never under one past
its reject limits.

Records wait unsealed until the link is given the time (`seal_queued(now)`): every seal checks the
key's age against that `now`, so a record queued while the key was young can never leave under a
key that has grown too old since.
"""

from __future__ import annotations

import struct

from altmesh.protocol import constants as C
from altmesh.protocol.errors import SessionExpired
from altmesh.protocol.framing import length_prefix
from altmesh.protocol.link_config import LinkConfig, LinkStats
from altmesh.protocol.transport import TransportCipher

_LENGTH = struct.Struct(">H")  # the frame's length prefix (a sealed message fits: <= 65535)


class Sender:
    """Queued records, sealed frames waiting for the socket, and the send key."""

    def __init__(self, config: LinkConfig, stats: LinkStats) -> None:
        self._config = config
        self._stats = stats
        self._cipher: TransportCipher | None = None
        self.key_created = 0.0  # when the current send key was installed
        self.last_sent = 0.0  # when the last transport message was sealed
        # Set once the send key sealed rekey_after_messages messages: a rekey is due.
        self.rekey_due = False
        # Set instead of sealing with a key past its reject limits; the link then fails.
        self.expired: SessionExpired | None = None
        self.expired_at: float | None = None
        # Bumped when a timer deadline may have moved earlier: a rekey fell due, the key expired,
        # a key was installed (LinkConnection.deadline_version).
        self.deadline_changes = 0
        self._records: list[bytes] = []  # the plaintext being filled
        self._records_len = 0
        self._plaintexts: list[bytes] = []  # full plaintexts, not sealed yet
        self._output: list[bytes] = []  # frames for the socket
        # Whether anything is queued, sealed or framed and not yet taken: False lets
        # `LinkConnection.data_to_send` answer without a call.
        self.busy = False

    @property
    def epoch(self) -> int:
        return self._cipher.epoch if self._cipher is not None else 0

    @property
    def has_queued(self) -> bool:
        """Whether records wait to be sealed."""
        return bool(self._records or self._plaintexts)

    @property
    def retained_bytes(self) -> int:
        """Bytes queued or sealed and not yet taken for the socket."""
        return (
            self._records_len
            + sum(len(p) for p in self._plaintexts)
            + sum(len(f) for f in self._output)
        )

    def install_key(self, key: bytes, epoch: int, now: float) -> None:
        """Send with a new key from the next message on (seal what the old one must carry
        first)."""
        self._cipher = TransportCipher(key, epoch)
        self.key_created = now
        self.rekey_due = False
        self.deadline_changes += 1

    def write_frame(self, message: bytes) -> None:
        """A handshake message: framed, not encrypted."""
        self._output.append(length_prefix(len(message)))
        self._output.append(message)
        self.busy = True

    def queue(self, record: bytes) -> None:
        """Queue one record; a record never spans two plaintexts."""
        if self._records_len + len(record) > C.MAX_PLAINTEXT_LEN:
            self._close_plaintext()
        self._records.append(record)
        self._records_len += len(record)
        self.busy = True

    def _close_plaintext(self) -> None:
        records = self._records
        if not records:
            return
        self._plaintexts.append(records[0] if len(records) == 1 else b"".join(records))
        self._records = []
        self._records_len = 0

    def seal_and_take(self, now: float) -> bytes:
        """`seal_queued(now)`, then `take_output()`: what the socket gets now."""
        records = self._records
        if self._plaintexts:
            self.seal_queued(now)
        elif records:  # seal_queued's usual case
            self._records = []
            self._records_len = 0
            self.seal(records[0] if len(records) == 1 else b"".join(records), now)
        self.busy = False
        output = self._output
        if not output:
            return b""
        data = b"".join(output)
        output.clear()
        self._stats.bytes_out += len(data)
        return data

    def seal_queued(self, now: float) -> None:
        """Seal every queued record, in order, under the current send key."""
        records = self._records
        if not self._plaintexts:  # the usual case: what was queued fits one plaintext
            if records:
                self._records = []
                self._records_len = 0
                self.seal(records[0] if len(records) == 1 else b"".join(records), now)
            return
        self._close_plaintext()
        plaintexts, self._plaintexts = self._plaintexts, []
        for plaintext in plaintexts:
            self.seal(plaintext, now)

    def seal(self, plaintext: bytes, now: float) -> None:
        """Encrypt one transport message under the current send key, unless that key is past
        its reject limits (then `expired` is set and nothing more is ever sealed)."""
        cipher = self._cipher
        if self.expired is not None or cipher is None:
            return
        config = self._config
        if now - self.key_created >= config.reject_after_time:
            self._expire(
                f"send key of epoch {cipher.epoch} is older than {config.reject_after_time} s "
                "and the rekey did not complete",
                now,
            )
            return
        if cipher.counter >= config.reject_after_messages:
            self._expire(
                f"send key of epoch {cipher.epoch} used for {cipher.counter} messages", now
            )
            return
        message = cipher.encrypt(plaintext)
        size = len(message)
        output = self._output
        output.append(_LENGTH.pack(size) if size <= C.MAX_MESSAGE_LEN else length_prefix(size))
        output.append(message)
        self.busy = True
        self.last_sent = now
        self._stats.messages_out += 1
        if cipher.counter >= config.rekey_after_messages and not self.rekey_due:
            self.rekey_due = True
            self.deadline_changes += 1

    def _expire(self, message: str, now: float) -> None:
        self.expired = SessionExpired(message)
        self.expired_at = now
        self.deadline_changes += 1
        self.discard()

    def take_output(self) -> bytes:
        """Every sealed frame, for the socket (drains)."""
        if not self._output:
            return b""
        data = b"".join(self._output)
        self._output.clear()
        self._stats.bytes_out += len(data)
        if not self.has_queued:
            self.busy = False
        return data

    def discard(self) -> None:
        """The link failed: nothing queued or sealed may leave any more."""
        self._records.clear()
        self._records_len = 0
        self._plaintexts.clear()
        self._output.clear()
        self.busy = False
