"""The service's publisher (altmesh.client.publish) against a real HTTP server on loopback: it
sends the service's name, key and address with its token, retries 5xx answers with backoff until
the dashboard takes the registration, and stops at an answer retrying cannot change."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from altmesh.client.publish import ServicePublisher, service_record, withdraw
from altmesh.config import Config, load_config
from altmesh.keyfile import decode_public_key
from altmesh.protocol import network_prefix, node_address

from .configs import PREFIX, common, make_node, relays_table

TOKEN = "service-token-for-web-alt"


class Dashboard:
    """Answers the queued statuses in turn (then 200) and records what it was sent."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.seen: list[tuple[str, str, dict[str, str]]] = []


@pytest.fixture
def dashboard() -> Iterator[tuple[str, Dashboard]]:
    state = Dashboard([])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.seen.append((self.path, self.headers["Authorization"], body))
            status = state.statuses.pop(0) if state.statuses else 200
            answer = json.dumps(
                {"error": "no"} if status >= 400 else {"dns": "published", "changed": True}
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _config(tmp_path: Path, url: str) -> Config:
    node = make_node(tmp_path)
    token = node.dir / "web.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    text = (
        common("service")
        + relays_table()
        + f'[service]\nname = "web.alt"\ntarget = "127.0.0.1:8080"\n'
        f'dashboard_url = "{url}"\ntoken_file = "web.token"\n'
    )
    return load_config(node.write(text), roles=("service",))


def test_the_publisher_retries_5xx_answers_until_the_dashboard_takes_the_registration(
    tmp_path: Path, dashboard: tuple[str, Dashboard]
) -> None:
    url, state = dashboard
    state.statuses = [503, 502]
    config = _config(tmp_path, url)
    publisher = ServicePublisher(config)
    publisher.start()
    try:
        assert publisher.registered.wait(30)
    finally:
        publisher.stop()
    record = service_record(config)
    assert len(state.seen) == 3
    assert all(
        (path, auth) == ("/api/v1/services/register", f"Bearer {TOKEN}")
        for path, auth, _body in state.seen
    )
    body = state.seen[-1][2]
    assert body == {"name": "web.alt", "public_key": record.public_key, "address": record.address}
    key = decode_public_key(record.public_key)
    assert record.address == str(node_address(network_prefix(PREFIX), key))


def test_the_publisher_stops_at_a_refused_token_and_withdraw_sends_the_name(
    tmp_path: Path, dashboard: tuple[str, Dashboard]
) -> None:
    url, state = dashboard
    state.statuses = [403]
    config = _config(tmp_path, url)
    publisher = ServicePublisher(config)
    publisher.start()
    deadline = time.monotonic() + 10
    while publisher.gave_up is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(1.0)  # a retry (0.5 s at most after a failure) would have been sent by now
    publisher.stop()
    assert not publisher.registered.is_set()
    assert publisher.gave_up is not None and publisher.gave_up.kind == "auth"
    assert len(state.seen) == 1
    assert withdraw(config) == {"dns": "published", "changed": True}
    assert state.seen[-1][:2] == ("/api/v1/services/withdraw", f"Bearer {TOKEN}")
    assert state.seen[-1][2] == {"name": "web.alt"}
