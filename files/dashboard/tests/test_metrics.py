"""Prometheus /metrics: reachable with the scrape token or a login, nothing else."""

from __future__ import annotations

import base64
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from keys_support import address_of
from prometheus_client.parser import text_string_to_metric_families

SCRAPE_TOKEN = "scrape-token-0123456789abcdef"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_need_the_scrape_token_or_a_login(make_app: Callable[..., Flask]) -> None:
    app = make_app(METRICS_TOKEN=SCRAPE_TOKEN)
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer wrong-token-0000000000"})
    assert wrong.status_code == 401
    right = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert right.status_code == 200
    assert "altmesh_dashboard_relays" in right.get_data(as_text=True)


def test_metrics_are_open_to_logged_in_users(viewer_client: FlaskClient) -> None:
    assert viewer_client.get("/metrics").status_code == 200


def test_metrics_count_relays_by_state_heartbeats_logins_and_failures(
    app: Flask,
    client: FlaskClient,
    viewer_client: FlaskClient,
    relay_token: Callable[[str], str],
) -> None:
    before = samples(viewer_client.get("/metrics").get_data(as_text=True))
    auth = {"Authorization": f"Bearer {relay_token('relay-1')}"}
    client.post(
        "/api/v1/relays/register",
        headers=auth,
        json={
            "name": "relay-1",
            "public_key": base64.b64encode(bytes(32)).decode(),
            "address": address_of(base64.b64encode(bytes(32)).decode()),
            "endpoints": [{"host": "192.0.2.1", "port": 7000}],
        },
    )
    client.post(
        "/api/v1/relays/heartbeat",
        headers=auth,
        json={"load": 0.1, "active_streams": 0, "bytes_in": 0, "bytes_out": 0, "version": "1"},
    )
    client.post("/api/v1/relays/heartbeat", headers={"Authorization": "Bearer amr_bogus"}, json={})
    after = samples(viewer_client.get("/metrics").get_data(as_text=True))

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert after[("altmesh_dashboard_relays", (("state", "up"),))] == 1
    assert after[("altmesh_dashboard_relays", (("state", "down"),))] == 0
    assert delta("altmesh_dashboard_heartbeats_total", result="accepted") == 1
    assert delta("altmesh_dashboard_failures_total", kind="relay_auth") == 1
    assert ("altmesh_dashboard_logins_total", (("result", "success"),)) in after
    # DNS updates are counted by the DNS blueprint; the family is exported from the start.
    text = viewer_client.get("/metrics").get_data(as_text=True)
    assert "# TYPE altmesh_dashboard_dns_updates_total counter" in text
