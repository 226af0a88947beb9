"""An operator in a real browser (Chromium via Playwright) adds a DNS record through the form of
the dashboard served by gunicorn; named serves it and the audit log shows it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dns_support import DnsLab, dns_lab, query, wait_for_answer


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
    assert page.locator("#records").is_visible()
    page.click("#add-record")
    page.fill("input[name=name]", "browser-test")
    page.fill("input[name=ttl]", "120")
    page.select_option("select[name=type]", "AAAA")
    page.fill("input[name=rdata]", "fd00:1:2::42")
    page.click("button[type=submit]:has-text('Add record')")
    page.wait_for_url(server.url + "/dns/")
    assert "Added browser-test.alt. 120 AAAA fd00:1:2::42" in page.inner_text("main")
    assert page.locator('tr[data-name="browser-test.alt."]').is_visible()

    served = wait_for_answer(lab.named, "browser-test.alt.", "AAAA", ["fd00:1:2::42"])
    assert served == ["fd00:1:2::42"]

    page.goto(server.url + "/audit/")
    audit = page.inner_text("main")
    assert "dns.add" in audit
    assert "dns:browser-test.alt. AAAA" in audit
    assert operator.username in audit
    assert "fd00:1:2::42" in audit


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
    error = page.locator('.field-error[data-field="rdata"]')
    assert "not valid A data" in error.inner_text()
    assert page.locator("input[name=rdata]").get_attribute("aria-invalid") == "true"
    assert query(lab.named, "bad.alt.", "A") == []
