"""Noise transport messages with `cryptography`'s ChaCha20Poly1305 and an explicit counter.

Wire-compatible with Noise's CipherState: nonce = 4 zero bytes || 64-bit little-endian counter,
empty associated data, one counter per direction per session, strictly in order (TCP).
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from altmesh.protocol.constants import MAX_NONCE
from altmesh.protocol.errors import DecryptError, NonceSpaceExhausted

_NONCE = struct.Struct("<4xQ")


class TransportCipher:
    """One direction of one session: a key and its counter. `epoch` names the key in errors
    (a link's rekey count; 0 for end-to-end sessions)."""

    __slots__ = ("_aead", "counter", "epoch")

    def __init__(self, key: bytes, epoch: int) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.counter = 0
        self.epoch = epoch

    def encrypt(self, plaintext: bytes | memoryview) -> bytes:
        """The next message. NonceSpaceExhausted (ours to avoid, never the peer's doing) once
        2^64 - 1 messages were sealed."""
        if self.counter >= MAX_NONCE:
            raise NonceSpaceExhausted(
                f"key of epoch {self.epoch} sealed {self.counter} messages, the most Noise allows"
            )
        nonce = _NONCE.pack(self.counter)
        self.counter += 1
        return self._aead.encrypt(nonce, plaintext, None)

    def decrypt(self, ciphertext: bytes | memoryview) -> bytes:
        """The plaintext of the peer's next message; DecryptError if it fails authentication
        or the peer went past the last counter."""
        if self.counter >= MAX_NONCE:
            raise DecryptError(f"peer sent more than {MAX_NONCE} messages under one key")
        try:
            plaintext = self._aead.decrypt(_NONCE.pack(self.counter), ciphertext, None)
        except InvalidTag:
            raise DecryptError(
                f"transport message {self.counter} of key epoch {self.epoch} failed "
                "authentication (bad MAC, corrupted or forged)"
            ) from None
        self.counter += 1
        return plaintext
