"""The dashboard client (altmesh.dashboard_client) against a real HTTPS server on loopback: TLS
verified against `ca_file`, the token sent as a Bearer header and never shown, and every kind of
failure mapped to its stable `kind`."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from altmesh.dashboard_client import DashboardClient, DashboardError

TOKEN = "relay-token-0123456789abcdef"


class Answers:
    """What the server answers next (status, body) and what it saw."""

    def __init__(self) -> None:
        self.status = 200
        self.body: bytes = b'{"heartbeat_interval_seconds": 30, "state": "up"}'
        self.seen: list[tuple[str, str, object]] = []


def _handler(answers: Answers) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"null")
            answers.seen.append((self.path, self.headers.get("Authorization", ""), body))
            self.send_response(answers.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answers.body)))
            self.end_headers()
            self.wfile.write(answers.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    key, cert = directory / "server.key", directory / "server.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=dashboard-test", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return key, cert


@pytest.fixture
def server(certificate: tuple[Path, Path]) -> Iterator[tuple[str, Answers]]:
    answers = Answers()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(answers))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certificate[1]), str(certificate[0]))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", answers
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_token_goes_as_a_bearer_header_over_tls_verified_with_ca_file(
    server: tuple[str, Answers], certificate: tuple[Path, Path]
) -> None:
    url, answers = server
    client = DashboardClient(url, TOKEN, ca_file=certificate[1], timeout=5)
    try:
        answer = client.heartbeat({"load": 0.1})
    finally:
        client.close()
    assert (answer.state, answer.interval_seconds) == ("up", 30.0)
    assert answers.seen == [("/api/v1/relays/heartbeat", f"Bearer {TOKEN}", {"load": 0.1})]


def test_a_certificate_the_system_does_not_trust_fails_as_tls_and_sends_nothing(
    server: tuple[str, Answers],
) -> None:
    url, answers = server
    client = DashboardClient(url, TOKEN, timeout=5)
    with pytest.raises(DashboardError) as info:
        client.heartbeat({"load": 0.1})
    client.close()
    assert info.value.kind == "tls"
    assert TOKEN not in str(info.value)
    assert answers.seen == []


@pytest.mark.parametrize(
    ("status", "body", "kind", "retry_helps"),
    [
        (401, b'{"error": "unknown token"}', "auth", False),
        (403, b'{"error": "not this relay\'s token"}', "auth", False),
        (409, b'{"error": "relay1 is not registered"}', "not_registered", False),
        (409, b'{"error": "web.alt is a CNAME"}', "conflict", False),
        (400, b'{"error": "bad load", "field": "load"}', "refused", False),
        (503, b'{"error": "DNS is not configured"}', "server_error", True),
        (200, b"<html>a proxy page</html>", "bad_answer", False),
        (200, b'{"state": "up"}', "bad_answer", False),
    ],
)
def test_each_kind_of_answer_becomes_a_failure_of_a_stable_kind(
    server: tuple[str, Answers],
    certificate: tuple[Path, Path],
    status: int,
    body: bytes,
    kind: str,
    retry_helps: bool,
) -> None:
    url, answers = server
    answers.status, answers.body = status, body
    client = DashboardClient(url, TOKEN, ca_file=certificate[1], timeout=5)
    with pytest.raises(DashboardError) as info:
        client.heartbeat({"load": 0.1})
    client.close()
    assert (info.value.kind, info.value.retry_helps) == (kind, retry_helps)
    assert TOKEN not in str(info.value)
    if status == 400:
        assert info.value.field == "load"
        assert str(info.value).endswith("/api/v1/relays/heartbeat: 400 bad load")


def test_a_dashboard_that_never_answers_is_a_timeout_and_a_closed_port_is_unreachable() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepted by the kernel, never answered
        client = DashboardClient(f"http://127.0.0.1:{silent.getsockname()[1]}", TOKEN, timeout=0.5)
        with pytest.raises(DashboardError) as info:
            client.send_events([])
        client.close()
    assert info.value.kind == "timeout" and info.value.retry_helps
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: refused
        client = DashboardClient(f"http://127.0.0.1:{closed.getsockname()[1]}", TOKEN, timeout=2)
        with pytest.raises(DashboardError) as info:
            client.register_service("web.alt", "key", "fd00::1")
        client.close()
    assert info.value.kind == "unreachable" and info.value.retry_helps
