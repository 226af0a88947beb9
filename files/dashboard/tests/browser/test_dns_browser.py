"""An operator in a real browser (Chromium via Playwright) adds a DNS record through the form of
the dashboard served by gunicorn; named serves it and the audit log shows it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dns_support import DnsLab, dns_lab, query, wait_for_answer
from playwright.sync_api import expect


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[DnsLab]:
    with dns_lab(tmp_path / "named") as running:
        yield running


def test_operator_adds_a_record_in_the_browser_and_named_serves_it(
    page: Any,
    lab: DnsLab,
    live_server_factory: Callable[..., Any],
    create_user: Callable[..., Any],
    browser_login: Callable[..., None],
) -> None:
    server = live_server_factory(**lab.settings())
    operator = create_user("operator")
    browser_login(page, server, operator)

    page.goto(server.url + "/dns/")
    expect(page.locator("#records")).to_be_visible()
    page.click("#add-record")
    page.fill("input[name=name]", "browser-test")
    page.fill("input[name=ttl]", "120")
    page.select_option("select[name=type]", "AAAA")
    page.fill("input[name=rdata]", "fd00:1:2::42")
    page.click("button[type=submit]:has-text('Add record')")
    page.wait_for_url(server.url + "/dns/")
    expect(page.locator("main")).to_contain_text("Added browser-test.alt. 120 AAAA fd00:1:2::42")
    expect(page.locator('tr[data-name="browser-test.alt."]')).to_be_visible()

    served = wait_for_answer(lab.named, "browser-test.alt.", "AAAA", ["fd00:1:2::42"])
    assert served == ["fd00:1:2::42"]

    page.goto(server.url + "/audit/")
    audit = page.locator("main")
    expect(audit).to_contain_text("dns.add")
    expect(audit).to_contain_text("dns:browser-test.alt. AAAA")
    expect(audit).to_contain_text(operator.username)
    expect(audit).to_contain_text("fd00:1:2::42")


def test_bad_input_in_the_browser_is_explained_next_to_the_field_and_not_sent(
    page: Any,
    lab: DnsLab,
    live_server_factory: Callable[..., Any],
    create_user: Callable[..., Any],
    browser_login: Callable[..., None],
) -> None:
    server = live_server_factory(**lab.settings())
    browser_login(page, server, create_user("operator"))

    page.goto(server.url + "/dns/records/new")
    page.fill("input[name=name]", "bad")
    page.select_option("select[name=type]", "A")
    page.fill("input[name=rdata]", "fd00::1")
    page.click("button[type=submit]:has-text('Add record')")
    expect(page.locator('.field-error[data-field="rdata"]')).to_contain_text("not valid A data")
    expect(page.locator("input[name=rdata]")).to_have_attribute("aria-invalid", "true")
    assert query(lab.named, "bad.alt.", "A") == []
