"""Key files: a private key (base64 of the 32-byte X25519 key, mode 0600), `<file>.pub` beside.

Public keys are written in standard base64 everywhere (TXT records, configs, logs).
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from altmesh.protocol.keys import decode_key, encode_key

KEY_LEN = 32


class KeyFileError(Exception):
    """A key (or other secret) file that is missing, unreadable, too open or malformed."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


# The one key codec (standard base64 of the 32 bytes), under the names the applications use.
encode_public_key = encode_key
decode_public_key = decode_key


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
        raise KeyFileError(path, "already exists (use --force to replace it)")
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


def read_secret_file(path: Path, what: str) -> bytes:
    """The bytes of a file only its owner may read (a private key, a token), or KeyFileError.

    Refused: a missing file, anything that is not a regular file, and a file whose mode lets its
    group or others read or write it (a secret others could read is no longer secret).
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise KeyFileError(path, f"{what} file does not exist") from None
    except OSError as err:
        raise KeyFileError(path, f"cannot read the {what} file: {err.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise KeyFileError(path, f"is a directory, not a {what} file")
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(path, f"is not a regular file (a {what} file must be one)")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            path, f"{what} file is readable by group or others (mode {mode:o}); chmod 600 {path}"
        )
    try:
        return path.read_bytes()
    except OSError as err:
        raise KeyFileError(path, f"cannot read the {what} file: {err.strerror}") from None


def read_private_key(path: Path) -> bytes:
    """The 32-byte private key of a key file made by `generate_key_file` (mode 600)."""
    data = read_secret_file(path, "private key")
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(
            path, "private key is not base64 (make one with altmesh keygen)"
        ) from None
    if len(raw) != KEY_LEN:
        raise KeyFileError(path, f"private key must be {KEY_LEN} bytes, found {len(raw)}")
    return raw
