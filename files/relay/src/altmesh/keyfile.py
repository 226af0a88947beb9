"""Key files: a private key (base64 of the 32-byte X25519 key, mode 0600), `<file>.pub` beside.

Public keys are written in standard base64 everywhere (TXT records, configs, logs).
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

KEY_LEN = 32


class KeyFileError(Exception):
    """A key file that is missing, unreadable, too open or malformed."""


def encode_public_key(public: bytes) -> str:
    return base64.b64encode(public).decode("ascii")


def decode_public_key(text: str) -> bytes:
    """Decode a base64 public key; ValueError with a clear message unless it is 32 bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{text!r} is not valid base64") from None
    if len(raw) != KEY_LEN:
        raise ValueError(f"public key must be {KEY_LEN} bytes, {text!r} decodes to {len(raw)}")
    return raw


def public_from_private(private: bytes) -> bytes:
    return (
        X25519PrivateKey.from_private_bytes(private)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def public_key_path(private_path: Path) -> Path:
    return private_path.with_name(private_path.name + ".pub")


def generate_key_file(path: Path, force: bool = False) -> bytes:
    """Make a new private key at `path` (0600) and its public key at `path.pub`; return public."""
    if path.exists() and not force:
        raise KeyFileError(f"{path} already exists (use --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    private = os.urandom(KEY_LEN)
    # Clamping is X25519's job; any 32 random bytes are a valid private key.
    tmp = path.with_name(path.name + ".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(tmp, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, base64.b64encode(private) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    public = public_from_private(private)
    public_key_path(path).write_text(encode_public_key(public) + "\n")
    return public


def read_private_key(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text()
    except OSError as err:
        raise KeyFileError(f"{path}: cannot read private key: {err.strerror}") from None
    if mode & 0o077:
        raise KeyFileError(f"{path}: private key is readable by others (mode {mode:o}); chmod 600")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{path}: private key is not base64") from None
    if len(raw) != KEY_LEN:
        raise KeyFileError(f"{path}: private key must be {KEY_LEN} bytes, found {len(raw)}")
    return raw
