"""End-to-end sessions: Noise IK between the two end nodes, carried in one stream's bytes.

Relays forward the stream's bytes and see only ciphertext. The byte format inside the stream is
the link's framing (2-byte big-endian length + Noise message) with its own prologue
(`altmesh-e2e`); see docs/protocol.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from altmesh.protocol.keys import StaticKeyPair
from altmesh.protocol.replay import ReplayStore


class EndToEndSession:
    """One end of an end-to-end session."""

    @classmethod
    def initiator(
        cls,
        network: str,
        local: StaticKeyPair,
        remote_public: bytes,
        *,
        wallclock: Callable[[], float] = time.time,
    ) -> EndToEndSession:
        """The client side; `remote_public` is the service's key (from DNS)."""
        raise NotImplementedError

    @classmethod
    def responder(
        cls,
        network: str,
        local_keys: Sequence[StaticKeyPair],
        *,
        authorize: Callable[[bytes], bool],
        replay_store: ReplayStore,
        wallclock: Callable[[], float] = time.time,
    ) -> EndToEndSession:
        """The service side; `authorize(client_key)` may refuse clients (KeyRefused)."""
        raise NotImplementedError

    def start(self) -> bytes:
        """The initiator's first bytes (framed handshake message 1)."""
        raise NotImplementedError

    def receive(self, data: bytes) -> list[bytes]:
        """Feed stream bytes; returns the plaintext chunks they completed. Raises ProtocolError."""
        raise NotImplementedError

    def encrypt(self, plaintext: bytes) -> bytes:
        """Framed ciphertext of `plaintext` (split into messages of at most 65519 bytes)."""
        raise NotImplementedError

    def pending_output(self) -> bytes:
        """Bytes the session itself must send (the responder's handshake reply); drains."""
        raise NotImplementedError

    @property
    def established(self) -> bool:
        """Whether both handshake messages were exchanged (encrypt may be used)."""
        raise NotImplementedError

    @property
    def remote_static(self) -> bytes | None:
        """The peer's proven static key (responder: known after message 1)."""
        raise NotImplementedError
