"""Real Chromium (Debian's, through Playwright) against the dashboard under gunicorn on loopback."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

import requests
from keys_support import address_of
from playwright.sync_api import expect

REGISTRATION = {
    "name": "relay-1",
    "public_key": base64.b64encode(bytes(range(32))).decode(),
    "address": address_of(base64.b64encode(bytes(range(32))).decode()),
    "endpoints": [{"host": "192.0.2.1", "port": 7000}],
}


def _heartbeat(load: float, links: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "load": load,
        "active_streams": 2,
        "bytes_in": 10,
        "bytes_out": 20,
        "version": "0.1.0",
        "links": links or [],
    }


def _api(url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
    """A relay API call that must succeed (a failure here would only confuse later asserts)."""
    response = requests.post(url, json=body, headers=headers, timeout=30)
    assert response.status_code in (200, 201), response.text


def test_relay_appears_after_its_heartbeat(
    page: Any,
    live_server: Any,
    create_user: Callable,
    relay_token: Callable[[str], str],
    browser_login: Callable,
) -> None:
    browser_login(page, live_server, create_user("viewer"))
    expect(page.locator("main")).to_contain_text("No relay has registered yet")
    auth = {"Authorization": f"Bearer {relay_token('relay-1')}"}
    register = requests.post(
        live_server.url + "/api/v1/relays/register", json=REGISTRATION, headers=auth, timeout=30
    )
    assert register.status_code == 201
    page.reload()
    expect(page.locator("tr[data-relay=relay-1] .state")).to_have_text("down")  # silent so far
    beat = requests.post(
        live_server.url + "/api/v1/relays/heartbeat",
        json=_heartbeat(0.37),
        headers=auth,
        timeout=30,
    )
    assert beat.status_code == 200
    page.reload()
    row = page.locator("tr[data-relay=relay-1]")
    expect(row.locator(".state")).to_have_text("up")
    expect(row).to_contain_text("37 %")
    row.locator("a").click()
    page.wait_for_url(live_server.url + "/relays/relay-1")
    expect(page.locator("#history tbody tr")).to_have_count(1)


def test_a_change_made_in_the_browser_shows_in_the_audit_log(
    page: Any,
    live_server: Any,
    create_user: Callable,
    relay_token: Callable[[str], str],
    browser_login: Callable,
) -> None:
    auth = {"Authorization": f"Bearer {relay_token('relay-1')}"}
    _api(live_server.url + "/api/v1/relays/register", REGISTRATION, auth)
    operator = create_user("operator")
    browser_login(page, live_server, operator)
    page.goto(live_server.url + "/relays/relay-1")
    page.click("text=Forget this relay")
    page.wait_for_url(live_server.url + "/relays/")
    expect(page.locator("body")).to_contain_text("Relay relay-1 forgotten.")
    page.get_by_role("link", name="Audit log", exact=True).click()
    page.wait_for_url(live_server.url + "/audit/")
    first_row = page.locator("#audit tbody tr").first
    for part in (operator.username, "relay.forget", "relay:relay-1", REGISTRATION["address"]):
        expect(first_row).to_contain_text(part)
    expect(page.locator("#audit")).to_contain_text("relay.register")


def test_a_post_without_csrf_token_fails(
    page: Any,
    live_server: Any,
    create_user: Callable,
    relay_token: Callable[[str], str],
    browser_login: Callable,
) -> None:
    auth = {"Authorization": f"Bearer {relay_token('relay-1')}"}
    _api(live_server.url + "/api/v1/relays/register", REGISTRATION, auth)
    browser_login(page, live_server, create_user("admin"))
    page.goto(live_server.url + "/relays/relay-1")
    # Strip the token from the real form, then submit it as the user would.
    page.locator("form[action$='/forget'] input[name=csrf_token]").evaluate("e => e.remove()")
    with page.expect_navigation():
        page.click("text=Forget this relay")
    expect(page.locator("body")).to_contain_text("The CSRF token is missing")
    page.goto(live_server.url + "/relays/")
    expect(page.locator("tr[data-relay=relay-1]")).to_have_count(1)  # nothing was deleted


def test_repeated_bad_logins_get_throttled(
    page: Any, live_server_factory: Callable, create_user: Callable
) -> None:
    server = live_server_factory(LOGIN_MAX_FAILURES=3)
    user = create_user("admin")
    for _ in range(3):
        page.goto(server.url + "/auth/login")
        page.fill("input[name=username]", user.username)
        page.fill("input[name=password]", "not-the-password")
        page.click("button[type=submit]")
        expect(page.locator(".error")).to_contain_text("Wrong username or password.")
    page.goto(server.url + "/auth/login")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", user.password)
    with page.expect_response(lambda r: r.url.endswith("/auth/login")) as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 429
    expect(page.locator(".error")).to_contain_text("Too many failed logins")
    page.goto(server.url + "/relays/")
    expect(page).to_have_url(re.compile(re.escape(server.url + "/auth/login")))


def test_mesh_picture_shows_links_coloured_by_state(
    page: Any,
    live_server: Any,
    create_user: Callable,
    relay_token: Callable[[str], str],
    browser_login: Callable,
) -> None:
    for name, links in [
        ("relay-1", [{"peer": "relay-2", "state": "up", "rtt_ms": 4.0}]),
        ("relay-2", [{"peer": "relay-1", "state": "down"}]),
    ]:
        auth = {"Authorization": f"Bearer {relay_token(name)}"}
        _api(live_server.url + "/api/v1/relays/register", {**REGISTRATION, "name": name}, auth)
        _api(live_server.url + "/api/v1/relays/heartbeat", _heartbeat(0.1, links), auth)
    browser_login(page, live_server, create_user("viewer"))
    page.get_by_role("link", name="Mesh", exact=True).click()
    page.wait_for_url(live_server.url + "/relays/mesh")
    expect(page.locator("svg g.node")).to_have_count(2)
    up = page.locator("svg line[data-from=relay-1][data-to=relay-2]")
    down = page.locator("svg line[data-from=relay-2][data-to=relay-1]")
    expect(up).to_have_attribute("stroke", "#27ae60")
    expect(down).to_have_attribute("stroke", "#c0392b")
