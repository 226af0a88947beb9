"""A real relay whose events file and state database sit on small filesystems of their own
(tmpfs, mounted and removed by the test) that fill up: nothing is lost silently, every failure
is counted and reported, and both recover once space returns."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from altmesh.protocol import StaticKeyPair

from . import helpers
from .helpers import RELAY, Node, Proc, free_port

FAILURES = 40


@contextlib.contextmanager
def small_tmpfs(parent: Path, size: str) -> Iterator[Path]:
    mount = parent / f"tmpfs-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
        mount.rmdir()


def fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` to the last byte; returns the filler file."""
    filler = directory / f"filler-{uuid.uuid4().hex[:8]}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


async def tampered_link(port: int, relay_public: bytes) -> None:
    """A link whose first transport message fails authentication (decryption_failed)."""
    _conn, reader, writer = await helpers.raw_link(port, StaticKeyPair.generate(), relay_public)
    writer.write(b"\x00\x40" + os.urandom(64))
    with contextlib.suppress(ConnectionError, TimeoutError):
        await asyncio.wait_for(reader.read(), 5)
    writer.close()


def metric(port: int, name: str) -> float:
    try:
        return helpers.metric_value(helpers.metrics_text(port), name)
    except KeyError:
        return 0.0


def test_security_events_on_a_full_disk_are_counted_reported_on_stderr_and_written_later(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path, "512k") as logs:
        node = Node("relay", tmp_path)
        node.events = logs / "events.jsonl"
        port, metrics_port = free_port(), free_port()
        helpers.write_relay_config(node, port, metrics_port)
        proc = Proc("relay", [*RELAY, "--config", str(node.config)], tmp_path)
        try:
            proc.wait_for_output("altmesh-relay ready")
            filler = fill(logs)

            async def failures() -> None:
                await asyncio.gather(*(tampered_link(port, node.public) for _ in range(FAILURES)))

            asyncio.run(failures())
            name = 'altmesh_security_events_total{event="decryption_failed"}'
            helpers.wait_until(lambda: metric(metrics_port, name) == FAILURES, 10, "counted")
            assert metric(metrics_port, "altmesh_security_events_unwritten_total") == FAILURES
            errors = proc.errors()
            assert errors.count('"decryption_failed"') == FAILURES
            assert "No space left on device" in errors
            assert "Traceback" not in errors
            assert node.events.read_bytes() == b""

            filler.unlink()  # space returns: the backlog goes out with the next event
            asyncio.run(tampered_link(port, node.public))
            helpers.wait_until(
                lambda: (
                    sum(1 for e in node.security_events() if e["event"] == "decryption_failed")
                    == FAILURES + 1
                ),
                10,
                "the backlog in the file",
            )
        finally:
            proc.stop()


def test_a_full_state_database_refuses_handshakes_with_a_counted_report_then_recovers(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path, "2m") as state:
        node = Node("relay", tmp_path)
        node.state = state / "relay"
        port, metrics_port = free_port(), free_port()
        helpers.write_relay_config(node, port, metrics_port)
        proc = Proc("relay", [*RELAY, "--config", str(node.config)], tmp_path)

        async def accepted() -> bool:
            _conn, _reader, writer = await helpers.raw_link(
                port, StaticKeyPair.generate(), node.public
            )
            writer.close()
            return True

        try:
            proc.wait_for_output("altmesh-relay ready")
            assert asyncio.run(accepted())
            filler = fill(state)

            async def refused() -> int:
                count = 0
                for _ in range(5):
                    try:
                        await helpers.raw_link(port, StaticKeyPair.generate(), node.public)
                    except (ConnectionError, TimeoutError):
                        count += 1
                return count

            # Every handshake is refused: its timestamp cannot be recorded durably.
            assert asyncio.run(refused()) == 5
            assert metric(metrics_port, "altmesh_state_write_failures_total") >= 5
            errors = proc.errors()
            assert "cannot record a handshake timestamp" in errors
            assert "Traceback" not in errors
            assert any(e["event"] == "state_unavailable" for e in node.security_events())

            filler.unlink()
            assert asyncio.run(accepted())  # space is back: handshakes are recorded again
        finally:
            proc.stop()
        assert "Traceback" not in proc.errors()
