"""The status page's pure parts: request heads, the Host rule, the CSP, human-readable bytes."""

from __future__ import annotations

import pytest
from altmesh.client.humanize import human_bytes, human_duration
from altmesh.client.status_page import allowed_hosts, content_security_policy, parse_head
from altmesh.config import HostPort


def test_a_plain_get_parses_with_lower_case_header_names() -> None:
    parsed = parse_head(
        b"GET /api/status?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8730\r\nAuthorization: Bearer t\r\n\r\n"
    )
    assert parsed == (
        "GET",
        "/api/status?x=1",
        {"host": "127.0.0.1:8730", "authorization": "Bearer t"},
    )


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/2\r\n\r\n",  # not HTTP/1.x
        b"GET http://evil.example/ HTTP/1.1\r\n\r\n",  # not a path
        b"GET  / HTTP/1.1\r\n\r\n",  # two spaces
        b"G3T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",  # obsolete line folding
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",  # space before the colon
        b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  # two Hosts
    ],
)
def test_malformed_heads_are_refused(head: bytes) -> None:
    assert parse_head(head) is None


def test_the_page_answers_only_to_its_own_loopback_address_and_port() -> None:
    hosts = allowed_hosts(HostPort("127.0.0.1", 8730))
    assert hosts == {"127.0.0.1:8730", "localhost:8730", "[::1]:8730"}
    assert "[::1]:8730" in allowed_hosts(HostPort("::1", 8730))
    assert "127.0.0.2:8730" in allowed_hosts(HostPort("127.0.0.2", 8730))
    assert "localhost" in allowed_hosts(HostPort("127.0.0.1", 80))  # the default port is left out


def test_the_csp_allows_only_the_nonced_script_and_style_and_same_origin_requests() -> None:
    csp = content_security_policy("abc")
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives == {
        "default-src": "'none'",
        "script-src": "'nonce-abc'",
        "style-src": "'nonce-abc'",
        "connect-src": "'self'",
        "img-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'none'",
        "frame-ancestors": "'none'",
    }


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (1536, "1.50 KiB"),
        (300 * 1024, "300 KiB"),
        (15 * 1024 * 1024 + 300 * 1024, "15.3 MiB"),
        (3 * 1024**3, "3.00 GiB"),
        (2 * 1024**6, "2048 PiB"),
    ],
)
def test_bytes_read_as_binary_units_with_three_digits(count: int, text: str) -> None:
    assert human_bytes(count) == text


def test_durations_read_in_their_two_largest_units() -> None:
    assert [human_duration(s) for s in (5, 65, 3 * 3600 + 120, 2 * 86400 + 7200)] == [
        "5 s",
        "1 min 5 s",
        "3 h 2 min",
        "2 d 2 h",
    ]
