"""Which SOCKS5 reply (RFC 1928 REP) a program gets when its stream cannot be opened.

One table, documented in docs/client-config.md ("SOCKS5 replies"), pinned there by a test:

| REP | meaning for altmesh |
|---|---|
| 1 general failure | this node cannot work now: no relay link, DNS unreachable or not validating |
| 2 not allowed | not a `.alt` name (or a network address with no key known for it) |
| 3 network unreachable | no route: the relays know no way to the name's address now |
| 4 host unreachable | no such name in the `alt.` zone |
| 5 connection refused | the service refused: the port is not published, or its target refused |
| 6 TTL expired | the stream did not open in time, or would cross more relays than the hop limit |
"""

from __future__ import annotations

from altmesh.client import socks5
from altmesh.client.dnssec import ResolveError
from altmesh.protocol.constants import ResetCode

# ResolveError kinds that mean "not a destination this proxy serves", not a failure to look up.
NOT_ALLOWED_KINDS = frozenset({"bad_name", "not_allowed", "unknown_key"})
NO_SUCH_NAME_KINDS = frozenset({"not_found"})

REPLY_MEANINGS = {
    socks5.REP_GENERAL_FAILURE: "this node cannot open streams now (relay link or DNS)",
    socks5.REP_NOT_ALLOWED: "not a .alt name",
    socks5.REP_NETWORK_UNREACHABLE: "no route to the name's address",
    socks5.REP_HOST_UNREACHABLE: "no such name",
    socks5.REP_CONNECTION_REFUSED: "the service refused the port or its target refused",
    socks5.REP_TTL_EXPIRED: "the stream did not open in time",
}


def reply_for_error(error: BaseException) -> int:
    """The reply for a stream that failed before it reached the relay (lookup, link)."""
    if isinstance(error, ResolveError):
        if error.kind in NOT_ALLOWED_KINDS:
            return socks5.REP_NOT_ALLOWED
        if error.kind in NO_SUCH_NAME_KINDS:
            return socks5.REP_HOST_UNREACHABLE
    # No relay link (NoRelayLink), DNS unreachable or not validating, anything unexpected.
    return socks5.REP_GENERAL_FAILURE


# The RESET codes a stream can meet before it opened (docs/protocol.md, section 6): the reply,
# and the words of the log line.
RESET_REPLIES: dict[int, tuple[int, str]] = {
    ResetCode.NO_ROUTE: (
        socks5.REP_NETWORK_UNREACHABLE,
        "no route: no relay announces the address",
    ),
    ResetCode.UNREACHABLE: (socks5.REP_NETWORK_UNREACHABLE, "destination unreachable now"),
    ResetCode.LINK_LOST: (socks5.REP_NETWORK_UNREACHABLE, "a link of the path was lost"),
    ResetCode.HOP_LIMIT: (socks5.REP_TTL_EXPIRED, "hop limit reached"),
    ResetCode.NEXT_HOP_BUSY: (socks5.REP_GENERAL_FAILURE, "the path cannot take more streams"),
    ResetCode.PATH_FAULT: (socks5.REP_GENERAL_FAILURE, "a link of the path failed"),
    ResetCode.RELAY_LIMIT: (socks5.REP_GENERAL_FAILURE, "a relay's stream or buffer limit"),
    ResetCode.PORT_REFUSED: (socks5.REP_CONNECTION_REFUSED, "port refused by the service"),
    ResetCode.TARGET_UNREACHABLE: (socks5.REP_CONNECTION_REFUSED, "the service's target refused"),
    ResetCode.E2E_FAILED: (socks5.REP_GENERAL_FAILURE, "the end-to-end handshake failed"),
}


def reply_for_reset(code: int) -> tuple[int, str]:
    """The reply (and what it means) for a stream reset before it opened, by RESET code."""
    return RESET_REPLIES.get(code, (socks5.REP_GENERAL_FAILURE, f"reset with code {code}"))
