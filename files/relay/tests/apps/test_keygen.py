"""`altmesh keygen`: a 0600 private key, its base64 public key printed and written beside it."""

from __future__ import annotations

import base64
import stat
import subprocess
import sys
from pathlib import Path

from altmesh.keyfile import public_from_private, read_private_key


def keygen(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "altmesh.cli", "keygen", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    result = keygen("--out", str(key))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    private = read_private_key(key)
    public_line = result.stdout.strip()
    assert base64.b64decode(public_line) == public_from_private(private)
    assert (tmp_path / "node.key.pub").read_text().strip() == public_line
    # The private key never appears in what keygen prints.
    assert key.read_text().strip() not in result.stdout + result.stderr


def test_keygen_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    assert keygen("--out", str(key)).returncode == 0
    before = key.read_text()
    second = keygen("--out", str(key))
    assert second.returncode == 1
    assert "already exists" in second.stderr
    assert key.read_text() == before


def test_keygen_prints_the_address_for_a_prefix(tmp_path: Path) -> None:
    result = keygen("--out", str(tmp_path / "k"), "--prefix", "fd12:3456:789a::/48")
    assert result.returncode == 0, result.stderr
    assert "address: fd12:3456:789a:" in result.stderr


def test_keygen_without_out_writes_nothing_and_says_out_is_required(tmp_path: Path) -> None:
    result = keygen(cwd=tmp_path)
    assert result.returncode == 2  # a usage error, like every missing required option
    assert "--out" in result.stderr and "required" in result.stderr
    assert list(tmp_path.iterdir()) == []
