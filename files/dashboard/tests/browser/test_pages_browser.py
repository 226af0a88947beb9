"""The status pages in real Chromium (Debian's, through Playwright) against gunicorn: the mesh
picture, the relay page's load chart and byte counts, the Services page with a real named, and
pages that refresh themselves under the strict Content-Security-Policy.

Each test saves a screenshot (in DASHBOARD_SCREENSHOTS if set, else the test's temporary
directory) so a person can check how the page looks."""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dns_support import DnsLab, dns_lab, wait_for_answer
from keys_support import address_of
from playwright.sync_api import expect

RELAY_KEYS = {f"relay-{n}": base64.b64encode(bytes([n]) * 32).decode() for n in range(1, 6)}


def _registration(name: str) -> dict[str, Any]:
    key = RELAY_KEYS[name]
    return {
        "name": name,
        "public_key": key,
        "address": address_of(key),
        "endpoints": [{"host": "192.0.2.1", "port": 7000}],
    }


def _heartbeat(load: float = 0.2, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "load": load,
        "active_streams": 2,
        "bytes_in": 10,
        "bytes_out": 20,
        "version": "0.1.0",
        "links": [],
    }
    body.update(changes)
    return body


def _post(url: str, body: dict[str, Any], token: str) -> dict[str, Any]:
    response = requests.post(
        url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert response.status_code in (200, 201), response.text
    answer: dict[str, Any] = response.json()
    return answer


def _screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    directory = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    return path


def _csp_violations(page: Any) -> list[str]:
    """Collects what Chromium reports when the page breaks its Content-Security-Policy."""
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return violations


def test_the_mesh_page_draws_every_reported_link_coloured_by_state_and_rtt(
    page: Any,
    live_server: Any,
    create_user: Callable[..., Any],
    relay_token: Callable[[str], str],
    browser_login: Callable[..., None],
    tmp_path: Path,
) -> None:
    reports = {
        "relay-1": [
            {"peer": "relay-2", "state": "up", "rtt_ms": 4.2},
            {"peer": "relay-3", "state": "up", "rtt_ms": 80.0},
            {"peer": "relay-4", "state": "up", "rtt_ms": 210.5},
        ],
        "relay-2": [{"peer": "relay-1", "state": "down", "rtt_ms": None}],
        "relay-3": [{"peer": "relay-1", "state": "connecting", "rtt_ms": None}],
        "relay-4": [{"peer": "relay-9", "state": "up", "rtt_ms": 12.0}],  # not registered
    }
    for name, links in reports.items():
        token = relay_token(name)
        _post(live_server.url + "/api/v1/relays/register", _registration(name), token)
        _post(live_server.url + "/api/v1/relays/heartbeat", _heartbeat(links=links), token)
    violations = _csp_violations(page)
    browser_login(page, live_server, create_user("viewer"))
    page.get_by_role("link", name="Mesh", exact=True).click()
    page.wait_for_url(live_server.url + "/relays/mesh")

    expect(page.locator("svg g.node")).to_have_count(5)  # four relays and the unknown peer
    expect(page.locator("svg g.node.unknown[data-relay=relay-9]")).to_have_count(1)
    expect(page.locator("svg line.link")).to_have_count(6)
    expected = {
        ("relay-1", "relay-2"): ("#27ae60", None, "4.2 ms"),  # up, fast: green, solid
        ("relay-1", "relay-3"): ("#d4ac0d", None, "80.0 ms"),  # up, medium: amber
        ("relay-1", "relay-4"): ("#e67e22", None, "210.5 ms"),  # up, slow: orange
        ("relay-2", "relay-1"): ("#c0392b", "6 4", "no RTT"),  # down: red, dashed
        ("relay-3", "relay-1"): ("#7f8c8d", "6 4", "no RTT"),  # connecting: grey, dashed
        ("relay-4", "relay-9"): ("#27ae60", None, "12.0 ms"),
    }
    for (source, target), (colour, dashes, rtt) in expected.items():
        line = page.locator(f"svg line[data-from={source}][data-to={target}]")
        expect(line).to_have_attribute("stroke", colour)
        if dashes:
            expect(line).to_have_attribute("stroke-dasharray", dashes)
        else:
            assert line.get_attribute("stroke-dasharray") is None
        expect(line.locator("title")).to_contain_text(rtt)
    # A half line the far end does not report is drawn thin and grey, never left in mid-air.
    unreported = page.locator("svg line.unreported")
    expect(unreported).to_have_count(2)
    for source, target in (("relay-4", "relay-1"), ("relay-9", "relay-4")):
        half = page.locator(f"svg line.unreported[data-from={source}][data-to={target}]")
        expect(half).to_have_attribute("stroke", "#bdc3c7")
        expect(half.locator("title")).to_have_text(f"{source} does not report a link to {target}")
    expect(page.locator("figcaption")).to_contain_text("not a registered relay")
    rows = page.locator("#links tbody tr")
    expect(rows).to_have_count(6)
    expect(rows.filter(has_text="relay-4").filter(has_text="relay-9")).to_contain_text("12.0 ms")
    # Every line is drawn inside the picture, between the circles it joins.
    box = page.locator("svg[aria-label='mesh of relays and links']").bounding_box()
    for line in page.locator("svg line.link").all():
        line_box = line.bounding_box()
        assert line_box is not None and box is not None
        assert box["x"] <= line_box["x"] <= box["x"] + box["width"]
        assert box["y"] <= line_box["y"] <= box["y"] + box["height"]
    _screenshot(page, tmp_path, "mesh")
    assert violations == []


def test_the_relay_page_charts_load_over_time_with_labelled_axes_and_readable_bytes(
    page: Any,
    live_server: Any,
    create_user: Callable[..., Any],
    relay_token: Callable[[str], str],
    browser_login: Callable[..., None],
    tmp_path: Path,
) -> None:
    token = relay_token("relay-1")
    _post(live_server.url + "/api/v1/relays/register", _registration("relay-1"), token)
    loads = [0.05, 0.3, 0.55, 0.9, 0.7, 0.2]
    for index, load in enumerate(loads):
        beat = _heartbeat(
            load,
            bytes_in=123_456_789 * (index + 1),
            bytes_out=1536,
            links=[{"peer": "relay-2", "state": "connecting", "rtt_ms": None}],
        )
        _post(live_server.url + "/api/v1/relays/heartbeat", beat, token)
        time.sleep(0.3)  # heartbeats spread over time, so the time axis has a span
    browser_login(page, live_server, create_user("viewer"))
    page.goto(live_server.url + "/relays/relay-1")

    chart = page.locator("svg#load-chart")
    expect(chart).to_be_visible()
    expect(chart.locator("text.y-tick")).to_have_text(["0%", "25%", "50%", "75%", "100%"])
    x_ticks = chart.locator("text.x-tick")
    expect(x_ticks).to_have_count(5)
    labels = x_ticks.all_text_contents()
    # A few seconds of heartbeats: tenths of seconds if needed, so no two ticks read the same.
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d(\.\d)?", label) for label in labels), labels
    assert labels == sorted(labels) and len(set(labels)) == len(labels)
    # Every label is inside the drawing (none clipped at the right edge).
    chart_box = chart.bounding_box()
    assert chart_box is not None
    for tick in x_ticks.all():
        tick_box = tick.bounding_box()
        assert tick_box is not None
        assert tick_box["x"] + tick_box["width"] <= chart_box["x"] + chart_box["width"]
    expect(chart.locator("text.axis-title")).to_have_text(
        ["load (% of capacity)", "time of heartbeat (UTC)"]
    )
    points = [
        tuple(float(v) for v in point.split(","))
        for point in (chart.locator("polyline").get_attribute("points") or "").split()
    ]
    assert len(points) == len(loads)
    assert [x for x, _ in points] == sorted(x for x, _ in points)
    # Higher load is drawn higher (smaller y): the line follows the loads sent, in order.
    ys = [y for _, y in points]
    assert sorted(range(len(ys)), key=lambda i: -ys[i]) == sorted(
        range(len(loads)), key=lambda i: loads[i]
    )

    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("706 MiB / 1.5 KiB")  # 6 x 123456789 bytes, then 1536
    history = page.locator("#history tbody tr")
    expect(history).to_have_count(len(loads))
    expect(history.first).to_contain_text("706 MiB")
    expect(history.last).to_contain_text("118 MiB")
    expect(page.locator("span.link.connecting")).to_have_css(
        "background-color", "rgb(127, 140, 141)"
    )  # the mesh picture's grey
    _screenshot(page, tmp_path, "relay-detail")


def test_status_pages_refresh_themselves_without_any_script_under_the_strict_csp(
    page: Any,
    live_server_factory: Callable[..., Any],
    create_user: Callable[..., Any],
    relay_token: Callable[[str], str],
    browser_login: Callable[..., None],
    tmp_path: Path,
) -> None:
    server = live_server_factory(PAGE_REFRESH_SECONDS=5)  # the smallest allowed
    violations = _csp_violations(page)
    browser_login(page, server, create_user("admin"))
    answer = page.goto(server.url + "/relays/")
    assert answer is not None
    policy = answer.headers["content-security-policy"]
    assert "script-src 'none'" in policy
    expect(page.locator("meta[http-equiv=refresh]")).to_have_attribute("content", "5")
    assert page.locator("script").count() == 0
    expect(page.locator("main")).to_contain_text("No relay has registered yet")

    token = relay_token("relay-1")
    _post(server.url + "/api/v1/relays/register", _registration("relay-1"), token)
    _post(server.url + "/api/v1/relays/heartbeat", _heartbeat(0.42), token)
    # No reload from the test: the page's own meta refresh brings the relay in.
    row = page.locator("tr[data-relay=relay-1]")
    expect(row.locator(".state")).to_have_text("up", timeout=20_000)
    expect(row).to_contain_text("42 %")
    expect(row.locator("td.bytes")).to_have_text("10 B / 20 B")
    _screenshot(page, tmp_path, "relays-refreshed")

    for path in ("/relays/mesh", "/relays/relay-1", "/services/"):
        page.goto(server.url + path)
        expect(page.locator("meta[http-equiv=refresh]")).to_have_attribute("content", "5")
    for path in ("/relays/tokens", "/auth/users", "/audit/"):  # forms and logs: no refresh
        page.goto(server.url + path)
        expect(page.locator("main")).to_be_visible()
        assert page.locator("meta[http-equiv=refresh]").count() == 0, path
    assert violations == []


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[DnsLab]:
    with dns_lab(tmp_path / "named") as running:
        yield running


def test_an_admin_makes_a_service_token_in_the_browser_and_the_services_page_shows_the_service(
    page: Any,
    lab: DnsLab,
    live_server_factory: Callable[..., Any],
    create_user: Callable[..., Any],
    relay_token: Callable[[str], str],
    browser_login: Callable[..., None],
    tmp_path: Path,
) -> None:
    server = live_server_factory(**lab.settings())
    browser_login(page, server, create_user("admin"))
    page.goto(server.url + "/relays/tokens")
    page.select_option("select[name=kind]", "service")
    page.fill("input[name=name]", "shop.alt")
    page.click("#new-token-form button[type=submit]")
    expect(page.locator("#new-token")).to_contain_text("Token for service shop.alt.")
    service_token = page.locator("#new-token code").inner_text()
    assert service_token.startswith("ams_")
    expect(page.locator("#tokens")).to_contain_text("service:shop.alt.")
    _screenshot(page, tmp_path, "tokens")

    service_key = base64.b64encode(b"s" * 32).decode()
    service_address = address_of(service_key)
    registered = _post(
        server.url + "/api/v1/services/register",
        {"name": "shop.alt", "public_key": service_key, "address": service_address},
        service_token,
    )
    assert registered["dns"] == "published"
    wait_for_answer(lab.named, "shop.alt.", "AAAA", [service_address])
    token = relay_token("relay-1")
    _post(server.url + "/api/v1/relays/register", _registration("relay-1"), token)
    _post(
        server.url + "/api/v1/relays/heartbeat",
        _heartbeat(attached=[service_address]),
        token,
    )

    page.get_by_role("link", name="Services", exact=True).click()
    page.wait_for_url(server.url + "/services/")
    row = page.locator('tr[data-service="shop.alt."]')
    expect(row).to_contain_text(service_address)
    expect(row).to_contain_text(service_key)
    expect(row).to_contain_text("the service (API)")
    expect(row.locator("td.attached a")).to_have_text("relay-1")
    assert row.locator(".mismatch").count() == 0
    expect(page.locator("#services")).not_to_contain_text("relay-1.alt.")  # a relay, not a service
    _screenshot(page, tmp_path, "services")
    row.locator("td.attached a").click()
    page.wait_for_url(server.url + "/relays/relay-1")
