"""Which SOCKS5 reply a failure gets (altmesh.client.socks_replies), and docs/client-config.md's
table of replies pinned to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from altmesh.client import socks5
from altmesh.client.dnssec import ResolveError
from altmesh.client.socks_replies import (
    REPLY_MEANINGS,
    RESET_REPLIES,
    reply_for_error,
    reply_for_reset,
)
from altmesh.client.uplink import NoRelayLink

DOCS = Path(__file__).resolve().parents[4] / "docs" / "client-config.md"


@pytest.mark.parametrize(
    ("kind", "reply"),
    [
        ("not_found", socks5.REP_HOST_UNREACHABLE),
        ("bad_name", socks5.REP_NOT_ALLOWED),
        ("not_allowed", socks5.REP_NOT_ALLOWED),
        ("unknown_key", socks5.REP_NOT_ALLOWED),
        ("dns_unreachable", socks5.REP_GENERAL_FAILURE),
        ("dns_error", socks5.REP_GENERAL_FAILURE),
        ("dnssec_bogus", socks5.REP_GENERAL_FAILURE),
        ("dnssec_unsigned", socks5.REP_GENERAL_FAILURE),
        ("bad_key", socks5.REP_GENERAL_FAILURE),
        ("address_mismatch", socks5.REP_GENERAL_FAILURE),
    ],
)
def test_each_lookup_failure_has_its_reply(kind: str, reply: int) -> None:
    assert reply_for_error(ResolveError(kind, "x.alt", "detail")) == reply


def test_no_relay_link_is_a_failure_of_this_node() -> None:
    assert reply_for_error(NoRelayLink("no relay link")) == socks5.REP_GENERAL_FAILURE


def test_no_such_name_not_alt_no_route_and_port_refused_are_four_different_replies() -> None:
    replies = {
        reply_for_error(ResolveError("not_found", "x.alt", "")),
        reply_for_error(ResolveError("bad_name", "x.com", "")),
        reply_for_reset(16)[0],  # the relay: no route
        reply_for_reset(4)[0],  # the service: port refused
    }
    assert len(replies) == 4


def test_an_unknown_reset_code_is_a_general_failure_naming_the_code() -> None:
    assert reply_for_reset(999) == (socks5.REP_GENERAL_FAILURE, "reset with code 999")


def test_the_documented_reply_table_matches_the_code() -> None:
    text = DOCS.read_text()
    section = text.split("#### SOCKS5 replies", 1)[1].split("####", 1)[0]
    rows = {
        int(match[1]): match[2]
        for match in re.finditer(r"^\| (\d) \| [^|]+ \| ([^|]+) \|$", section, re.M)
    }
    assert set(REPLY_MEANINGS) <= set(rows), rows
    for code, (reply, _meaning) in RESET_REPLIES.items():
        assert f"RESET {code}" in rows[reply], (code, reply, rows[reply])


def test_every_reset_code_a_relay_or_service_sends_has_its_own_reply_and_words() -> None:
    from altmesh.protocol.constants import ResetCode

    sent_to_a_client = {
        value
        for name, value in vars(ResetCode).items()
        if name.isupper() and name not in ("GIVEN_UP", "LOCAL_CLOSED")  # the client's own codes
    }
    assert sent_to_a_client == set(RESET_REPLIES)
    assert reply_for_reset(ResetCode.HOP_LIMIT)[0] == socks5.REP_TTL_EXPIRED
    assert reply_for_reset(ResetCode.UNREACHABLE)[0] == socks5.REP_NETWORK_UNREACHABLE
