"""Static X25519 key pairs and their text encoding (standard base64, everywhere)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from noise.backends.default.keypairs import KeyPair25519  # type: ignore[import-untyped]

from altmesh.protocol.constants import KEY_LEN
from altmesh.protocol.errors import InvalidArgument


@dataclass(frozen=True)
class StaticKeyPair:
    """A node's long-term X25519 key pair. `repr` never shows the private key."""

    private: bytes = field(repr=False)
    public: bytes

    @classmethod
    def generate(cls) -> StaticKeyPair:
        """A fresh key pair from the operating system's random source."""
        private = X25519PrivateKey.generate().private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        )
        return cls.from_private(private)

    @classmethod
    def from_private(cls, private: bytes) -> StaticKeyPair:
        """The key pair of a 32-byte private key (InvalidArgument otherwise)."""
        if len(private) != KEY_LEN:
            raise InvalidArgument(f"a private key is {KEY_LEN} bytes, got {len(private)}")
        public = (
            X25519PrivateKey.from_private_bytes(private)
            .public_key()
            .public_bytes(Encoding.Raw, PublicFormat.Raw)
        )
        return cls(private=bytes(private), public=public)

    @cached_property
    def noise_keypair(self) -> Any:
        """This key pair as `noiseprotocol`'s static key object, built once per key pair
        (`set_keypair_from_private_bytes` would make the X25519 key object and derive the
        public key again for every handshake). Handshakes only read it."""
        return KeyPair25519.from_private_bytes(self.private)


def encode_key(key: bytes) -> str:
    """Standard base64 (with padding) of a 32-byte key."""
    if len(key) != KEY_LEN:
        raise InvalidArgument(f"a key is {KEY_LEN} bytes, got {len(key)}")
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str) -> bytes:
    """The 32 bytes of a base64 key; InvalidArgument (a ValueError) saying what is wrong if not."""
    cleaned = text.strip()
    try:
        key = base64.b64decode(cleaned.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as error:
        raise InvalidArgument(f"key is not valid base64: {error}") from None
    if len(key) != KEY_LEN:
        raise InvalidArgument(
            f"key must decode to {KEY_LEN} bytes (44 base64 characters), got {len(key)} bytes"
        )
    return key
