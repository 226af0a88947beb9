"""Noise transport messages with `cryptography`'s ChaCha20Poly1305 and an explicit counter.

Wire-compatible with Noise's CipherState: nonce = 4 zero bytes || 64-bit little-endian counter,
empty associated data, one counter per direction per session, strictly in order (TCP).
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from altmesh.protocol.errors import DecryptError

_NONCE = struct.Struct("<4xQ")
MAX_COUNTER = 2**64 - 1  # Noise reserves 2^64-1


class TransportCipher:
    """One direction of one session: a key, its counter and when it was made."""

    __slots__ = ("_aead", "counter", "created", "epoch")

    def __init__(self, key: bytes, created: float, epoch: int) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.counter = 0
        self.created = created
        self.epoch = epoch

    def encrypt(self, plaintext: bytes | memoryview) -> bytes:
        if self.counter >= MAX_COUNTER:
            raise DecryptError("nonce space exhausted")
        nonce = _NONCE.pack(self.counter)
        self.counter += 1
        return self._aead.encrypt(nonce, plaintext, None)

    def decrypt(self, ciphertext: bytes | memoryview) -> bytes:
        if self.counter >= MAX_COUNTER:
            raise DecryptError("nonce space exhausted")
        try:
            plaintext = self._aead.decrypt(_NONCE.pack(self.counter), ciphertext, None)
        except InvalidTag:
            raise DecryptError(
                f"transport message {self.counter} of key epoch {self.epoch} failed "
                "authentication (bad MAC, corrupted or forged)"
            ) from None
        self.counter += 1
        return plaintext
