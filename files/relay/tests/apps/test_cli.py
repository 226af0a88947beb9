"""The `altmesh` command line: pipes closed early, `serve` with any client config."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .configs import common, make_node, relays_table

STATUS = {
    "role": "client",
    "address": "fd12:3456:789a::1",
    "link_state": "established",
    "relay": "127.0.0.1:7400",
    "rtt_ms": 0.5,
    "streams_open": 0,
    "streams_total": 0,
    "bytes_in": 0,
    "bytes_out": 0,
    "reconnects": 0,
    "forwards": [f"{port}:web.alt:80" for port in range(10000, 12000)],
}


def _serve_status_once(path: Path, answer_when: threading.Event) -> threading.Thread:
    """A control socket that answers one `altmesh status` once `answer_when` is set."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        with server:
            connection, _ = server.accept()
            with connection:
                answer_when.wait(30)
                connection.sendall(json.dumps(STATUS).encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_status_into_a_pipe_closed_early_ends_quietly(tmp_path: Path) -> None:
    control = tmp_path / "control.sock"
    reader_gone = threading.Event()
    server = _serve_status_once(control, reader_gone)
    read_end, write_end = os.pipe()
    status = subprocess.Popen(
        [sys.executable, "-m", "altmesh.cli", "status", "--socket", str(control)],
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write_end)
    os.close(read_end)  # like `| head` having exited before altmesh writes
    reader_gone.set()
    _, stderr = status.communicate(timeout=60)
    server.join(5)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr
    assert stderr == ""
    assert status.returncode == 128 + signal.SIGPIPE


def test_serve_runs_a_service_from_a_client_config_without_service_or_dns_tables(
    tmp_path: Path,
) -> None:
    node = make_node(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config = node.write(common("client") + relays_table(closed_port))
    check = subprocess.run(
        [sys.executable, "-m", "altmesh.cli", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 1 and f"{config}: dns: table is required" in check.stderr
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "altmesh.cli",
            "serve",
            "web.alt",
            "--to",
            "127.0.0.1:8000",
            "--config",
            str(config),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stderr is not None
        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline:
            line = serve.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "serving web.alt -> 127.0.0.1:8000" in line:
                break
        assert any("serving web.alt -> 127.0.0.1:8000" in line for line in seen), seen
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
    assert serve.returncode == 0


def test_serve_without_a_name_anywhere_says_where_to_give_it(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    config = node.write(common("client") + relays_table())
    result = subprocess.run(
        [sys.executable, "-m", "altmesh.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"{config}: service.name: is required to run a service (or give NAME and --to to "
        "altmesh serve)",
        f"{config}: service.target: is required to run a service (or give NAME and --to to "
        "altmesh serve)",
    ]
