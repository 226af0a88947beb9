"""The client's status page in a real Chromium (Debian's, through Playwright), served by a real
`altmesh up` linked to a real relay, with a real service behind it. Screenshots go to the test's
directory (status-page-*.png)."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from integration.status_net import StatusNet, open_echo_stream, status_net
from playwright.sync_api import expect

STREAM_BYTES = 300 * 1024
_MS = re.compile(r"^\d+\.\d\d ms$")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StatusNet]:
    with status_net(tmp_path_factory.mktemp("status-page-browser")) as network:
        yield network


class EchoStream:
    """A SOCKS5 stream through the client held open in a thread of its own (Playwright's sync
    API owns the main thread's event loop)."""

    def __init__(self, socks_port: int, payload: bytes) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        opened = asyncio.run_coroutine_threadsafe(open_echo_stream(socks_port, payload), self.loop)
        self.reader, self.writer = opened.result(30)

    def close(self) -> None:
        async def close() -> None:
            self.writer.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def open_page(context: Any, net: StatusNet) -> tuple[Any, list[str], list[str]]:
    """The page opened as `altmesh status --page-url` says; every request and console line."""
    page = context.new_page()
    requests: list[str] = []
    console: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.goto(net.login_url())
    return page, requests, console


def test_the_page_shows_the_link_the_relays_and_a_live_stream_with_its_path_and_bytes(
    context: Any, net: StatusNet
) -> None:
    page, requests, console = open_page(context, net)
    expect(page.locator("#link-badge")).to_have_text("link established")
    assert "#token=" not in page.url  # the script took the token out of the address bar
    facts = page.locator("#link-facts")
    expect(facts).to_contain_text(f"127.0.0.1:{net.relay_port}")
    expect(facts).to_contain_text("chosen because")
    current = page.locator("#candidates tbody tr.current")
    expect(current).to_have_count(1)
    expect(current.locator("td").nth(4)).to_have_text(_MS)
    expect(page.locator("#candidates tbody tr")).to_have_count(2)
    expect(page.locator("#candidates tbody")).to_contain_text("failed (refused)")
    expect(page.locator("#stream-table tbody")).to_contain_text("no stream is open")
    expect(page.locator("#local-facts")).to_contain_text(f"127.0.0.1:{net.socks_port}")

    stream = EchoStream(net.socks_port, os.urandom(STREAM_BYTES))
    try:
        row = page.locator("#stream-table tbody tr").filter(has_text="data.alt:9")
        expect(row).to_have_count(1)  # appears without a reload: the page polls
        cells = row.locator("td")
        expect(cells.nth(1)).to_have_text("socks")
        expect(cells.nth(3)).to_have_text("open")
        expect(cells.nth(4)).to_have_text(f"127.0.0.1:{net.relay_port}")  # the relay it crosses
        expect(cells.nth(5)).to_have_text("300 KiB")  # echoed back
        expect(cells.nth(6)).to_have_text("300 KiB")  # sent (and the 5 bytes of ECHO\n)
        expect(facts).to_contain_text(" KiB in, ")
        page.screenshot(path=str(net.workdir / "status-page-stream.png"), full_page=True)
    finally:
        stream.close()
    expect(page.locator("#stream-table tbody")).to_contain_text("no stream is open")

    origin = f"http://127.0.0.1:{net.page_port}/"
    assert requests and all(url.startswith(origin) for url in requests), requests
    assert not [line for line in console if "Content Security Policy" in line], console


def test_the_page_lists_recent_errors_and_security_events(context: Any, net: StatusNet) -> None:
    page, _requests, _console = open_page(context, net)
    # The entry with a key no relay holds: its refusal is a warning; links rekey every 2 s.
    expect(page.locator("#error-list")).to_contain_text("during the link handshake")
    expect(page.locator("#error-list li.level-warning").first).to_be_visible()
    expect(page.locator("#event-list")).to_contain_text("rekey")
    expect(page.locator("#relay-history")).to_contain_text("joined")
    expect(page.locator("#relay-history")).to_contain_text("refused")
    page.screenshot(path=str(net.workdir / "status-page-events.png"), full_page=True)


def test_without_its_token_the_page_shows_no_data(context: Any, net: StatusNet) -> None:
    page = context.new_page()
    page.goto(net.page)
    expect(page.locator("#notice")).to_contain_text("needs its token")
    expect(page.locator("#link-badge")).to_have_text("no token")
    expect(page.locator("#identity")).to_have_text("")
    answer = page.evaluate(
        "async () => (await fetch('/api/status', {headers: {Authorization: 'Bearer x'}})).status"
    )
    assert answer == 401
    page.goto(net.page + "#token=wrong")
    expect(page.locator("#link-badge")).to_have_text("wrong token")
    page.screenshot(path=str(net.workdir / "status-page-no-token.png"), full_page=True)


def test_a_rebound_host_name_gets_neither_the_page_nor_the_data(
    context: Any, net: StatusNet
) -> None:
    page = context.new_page()
    rebound = f"http://rebind.example:{net.page_port}/"
    response = page.goto(rebound)
    assert response is not None and response.status == 403
    assert "answers only to its loopback address" in page.content()
    # The attacker's own page on the rebound name (served by their server before the name was
    # rebound to 127.0.0.1): its script may fetch the node's API as same-origin.
    page.route(rebound + "attacker", lambda route: route.fulfill(body="<html>attacker</html>"))
    page.goto(rebound + "attacker")
    token = net.token()
    # With the token, the script still learns nothing: the node answers 403 to the foreign Host
    # (test_status_page checks that answer at the HTTP level), or Chromium itself blocks a
    # public origin's request to a loopback address (Private Network Access) before it is sent.
    outcome = page.evaluate(
        "async (token) => { try { const r = await fetch('/api/status', "
        "{headers: {Authorization: 'Bearer ' + token}}); "
        "return {status: r.status, body: await r.text()}; } "
        "catch (error) { return {status: 0, body: String(error)}; } }",
        token,
    )
    assert outcome["status"] in (0, 403), outcome
    assert "public_key" not in outcome["body"] and "streams" not in outcome["body"], outcome


def test_the_page_says_so_when_the_node_stops(context: Any, net: StatusNet) -> None:
    page, _requests, _console = open_page(context, net)
    expect(page.locator("#link-badge")).to_have_text("link established")
    net.procs["client"].stop()
    expect(page.locator("#link-badge")).to_have_text("node not answering")
    expect(page.locator("#notice")).to_contain_text("does not answer")
    page.screenshot(path=str(net.workdir / "status-page-stopped.png"), full_page=True)
