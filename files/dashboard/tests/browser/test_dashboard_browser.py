"""Real Chromium (Debian's, through Playwright) against the dashboard under gunicorn on loopback."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import requests

REGISTRATION = {
    "name": "relay-1",
    "public_key": base64.b64encode(bytes(range(32))).decode(),
    "address": "fd00::1",
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


def test_relay_appears_after_its_heartbeat(
    page: Any,
    live_server: Any,
    create_user: Callable,
    relay_token: Callable[[str], str],
    browser_login: Callable,
) -> None:
    browser_login(page, live_server, create_user("viewer"))
    assert "No relay has registered yet" in page.content()
    auth = {"Authorization": f"Bearer {relay_token('relay-1')}"}
    register = requests.post(
        live_server.url + "/api/v1/relays/register", json=REGISTRATION, headers=auth, timeout=10
    )
    assert register.status_code == 201
    page.reload()
    assert page.inner_text("tr[data-relay=relay-1] .state") == "down"  # registered, silent
    beat = requests.post(
        live_server.url + "/api/v1/relays/heartbeat",
        json=_heartbeat(0.37),
        headers=auth,
        timeout=10,
    )
    assert beat.status_code == 200
    page.reload()
    row = page.locator("tr[data-relay=relay-1]")
    assert row.locator(".state").inner_text() == "up"
    assert "37 %" in row.inner_text()
    row.locator("a").click()
    page.wait_for_url(live_server.url + "/relays/relay-1")
    assert page.locator("#history tbody tr").count() == 1


def test_a_change_made_in_the_browser_shows_in_the_audit_log(
    page: Any,
    live_server: Any,
    create_user: Callable,
    relay_token: Callable[[str], str],
    browser_login: Callable,
) -> None:
    auth = {"Authorization": f"Bearer {relay_token('relay-1')}"}
    requests.post(
        live_server.url + "/api/v1/relays/register", json=REGISTRATION, headers=auth, timeout=10
    )
    operator = create_user("operator")
    browser_login(page, live_server, operator)
    page.goto(live_server.url + "/relays/relay-1")
    page.click("text=Forget this relay")
    page.wait_for_url(live_server.url + "/relays/")
    assert "Relay relay-1 forgotten." in page.content()
    page.get_by_role("link", name="Audit log", exact=True).click()
    page.wait_for_url(live_server.url + "/audit/")
    first_row = page.locator("#audit tbody tr").first
    text = first_row.inner_text()
    assert operator.username in text and "relay.forget" in text and "relay:relay-1" in text
    assert "fd00::1" in text  # the before state
    assert "relay.register" in page.locator("#audit").inner_text()


def test_a_post_without_csrf_token_fails(
    page: Any,
    live_server: Any,
    create_user: Callable,
    relay_token: Callable[[str], str],
    browser_login: Callable,
) -> None:
    auth = {"Authorization": f"Bearer {relay_token('relay-1')}"}
    requests.post(
        live_server.url + "/api/v1/relays/register", json=REGISTRATION, headers=auth, timeout=10
    )
    browser_login(page, live_server, create_user("admin"))
    page.goto(live_server.url + "/relays/relay-1")
    # Strip the token from the real form, then submit it as the user would.
    page.locator("form[action$='/forget'] input[name=csrf_token]").evaluate("e => e.remove()")
    with page.expect_navigation():
        page.click("text=Forget this relay")
    assert "The CSRF token is missing" in page.content()
    page.goto(live_server.url + "/relays/")
    assert page.locator("tr[data-relay=relay-1]").count() == 1  # nothing was deleted


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
        assert "Wrong username or password." in page.locator(".error").inner_text()
    page.goto(server.url + "/auth/login")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", user.password)
    with page.expect_response(lambda r: r.url.endswith("/auth/login")) as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 429
    assert "Too many failed logins" in page.locator(".error").inner_text()
    page.goto(server.url + "/relays/")
    assert page.url.startswith(server.url + "/auth/login")


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
        requests.post(
            live_server.url + "/api/v1/relays/register",
            json={**REGISTRATION, "name": name},
            headers=auth,
            timeout=10,
        )
        requests.post(
            live_server.url + "/api/v1/relays/heartbeat",
            json=_heartbeat(0.1, links),
            headers=auth,
            timeout=10,
        )
    browser_login(page, live_server, create_user("viewer"))
    page.get_by_role("link", name="Mesh", exact=True).click()
    page.wait_for_url(live_server.url + "/relays/mesh")
    assert page.locator("svg g.node").count() == 2
    up = page.locator("svg line[data-from=relay-1][data-to=relay-2]")
    down = page.locator("svg line[data-from=relay-2][data-to=relay-1]")
    assert up.get_attribute("stroke") == "#27ae60"
    assert down.get_attribute("stroke") == "#c0392b"
