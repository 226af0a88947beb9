"""The client's status page over HTTP, against a real `altmesh up`: the token, the Host header
check (DNS rebinding), the CSP, bounded requests, nothing secret logged; and `altmesh status`
showing the candidates, their RTTs and why the relay was chosen.

The same page in a real Chromium: tests/browser/test_status_page_browser.py.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from . import helpers
from .helpers import ALTMESH
from .status_net import StatusNet, status_net


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StatusNet]:
    with status_net(tmp_path_factory.mktemp("status-page")) as network:
        yield network


def http(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP exchange: (status, headers with lower-case names, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def get(
    net: StatusNet, path: str, host: str | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{net.page_port}'}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return http(net.page_port, ("\r\n".join(lines) + "\r\n\r\n").encode())


def test_the_status_api_answers_only_with_the_token(net: StatusNet) -> None:
    token = net.token()
    assert get(net, "/api/status")[0] == 401
    assert get(net, "/api/status", Authorization="Bearer not-the-token")[0] == 401
    assert get(net, "/api/status", Authorization=f"Basic {token}")[0] == 401
    status, headers, body = get(net, "/api/status", Authorization=f"Bearer {token}")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    data = json.loads(body)
    assert data["link_state"] == "established"
    assert token not in body.decode()


def test_a_host_header_other_than_the_loopback_address_gets_403(net: StatusNet) -> None:
    token = net.token()
    port = net.page_port
    for host in (f"rebind.example:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}", f"evil.{port}"):
        status, _, body = get(net, "/api/status", host=host, Authorization=f"Bearer {token}")
        assert status == 403, host
        assert b"link_state" not in body
    assert http(port, b"GET / HTTP/1.1\r\n\r\n")[0] == 403  # no Host at all
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        assert get(net, "/", host=host)[0] == 200, host


def test_every_page_carries_a_strict_csp_with_a_fresh_nonce(net: StatusNet) -> None:
    nonces = []
    for _ in range(2):
        status, headers, body = get(net, "/")
        assert status == 200
        csp = headers["content-security-policy"]
        nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
        assert nonce is not None, csp
        nonces.append(nonce.group(1))
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
        page = body.decode()
        assert f'<script nonce="{nonce.group(1)}">' in page
        assert f'<style nonce="{nonce.group(1)}">' in page
        assert not re.search(r"(src|href)=", page), "the page loads nothing"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
    assert nonces[0] != nonces[1]


def test_malformed_oversized_and_other_requests_are_refused(net: StatusNet) -> None:
    port = net.page_port
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    assert http(port, b"POST / HTTP/1.1\r\n" + host + b"\r\n")[0] == 405
    assert http(port, b"GET http://evil/ HTTP/1.1\r\n" + host + b"\r\n")[0] == 400
    assert http(port, b"GET / HTTP/1.1\r\n" + host + b" folded\r\n\r\n")[0] == 400
    assert http(port, b"GET / HTTP/1.1\r\n" + host + host + b"\r\n")[0] == 400  # two Hosts
    assert http(port, b"HELLO\r\n\r\n")[0] == 400
    big = b"GET / HTTP/1.1\r\n" + host + b"X-Pad: " + b"a" * 9000 + b"\r\n\r\n"
    assert http(port, big)[0] == 431
    assert get(net, "/nothing")[0] == 404
    status, headers, body = http(port, b"HEAD / HTTP/1.1\r\n" + host + b"\r\n")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_a_connection_that_sends_nothing_is_dropped(net: StatusNet) -> None:
    with socket.create_connection(("127.0.0.1", net.page_port), timeout=15) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert time.monotonic() - started < 8  # REQUEST_TIMEOUT is 5 s


def test_the_token_is_in_no_log_and_in_no_file(net: StatusNet) -> None:
    token = net.token()
    get(net, "/api/status", Authorization=f"Bearer {token}")
    get(net, "/api/status", Authorization="Bearer wrong")
    for proc in net.procs.values():
        assert token not in proc.errors() and token not in proc.output()
    for path in net.workdir.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert token.encode() not in path.read_bytes(), path


def test_altmesh_status_shows_the_candidates_their_rtts_and_why_the_relay_was_chosen(
    net: StatusNet,
) -> None:
    helpers.wait_until(
        lambda: any(
            c["state"].startswith("failed (refused)")
            for c in helpers.node_status(net.client)["candidates"]
        ),
        20,
        "the stranger's entry to fail",
    )
    result = subprocess.run(
        [*ALTMESH, "status", "--config", str(net.client.config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "link:       established" in out
    assert re.search(r"^chosen:     .+", out, re.M), out
    assert "candidates:" in out
    current = [line for line in out.splitlines() if line.startswith("  * ")]
    assert len(current) == 1 and re.search(r"rtt +\d+\.\d\d ms", current[0]), out
    assert any("failed (refused)" in line for line in out.splitlines()), out
    assert f"page:       http://127.0.0.1:{net.page_port}/ (with its token: --page-url)" in out
    assert "#token=" not in out
    status = json.loads(
        subprocess.run(
            [*ALTMESH, "status", "--json", "--config", str(net.client.config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    )
    assert "status_page_login" not in status
    assert status["chosen_because"] and status["candidates"][0]["rtt_ms"] > 0


def test_the_page_is_off_unless_asked_for(net: StatusNet) -> None:
    node = helpers.Node("quiet", net.workdir)
    helpers.write_client_config(
        node,
        "client",
        net.relay,
        net.relay_port,
        dns_port=net.named.port,
        trust_anchor=net.named.trust_anchor,
    )
    proc = helpers.Proc("quiet", [*ALTMESH, "up", "--config", str(node.config)], net.workdir)
    try:
        helpers.wait_linked(node)
        result = subprocess.run(
            [*ALTMESH, "status", "--page-url", "--config", str(node.config)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1
        assert "the status page is off" in result.stderr
        assert helpers.node_status(node)["status_page"] is None
    finally:
        proc.stop()
