"""Every number that defines the routing payload, in one place.

docs/routing.md is the normative description of each; change one here only together with it.
"""

from __future__ import annotations

from typing import Final

from altmesh.protocol.constants import MAX_ROUTE_INFO_LEN

ROUTING_VERSION: Final = 1
PAYLOAD_ANNOUNCEMENTS: Final = 1  # the only payload type of version 1

# Payload: version (1) · type (1) · announcement count (2) · announcements.
PAYLOAD_HEADER_LEN: Final = 4
MAX_PAYLOAD_LEN: Final = MAX_ROUTE_INFO_LEN  # one ROUTE_INFO record carries one payload
MAX_ANNOUNCEMENT_LEN: Final = MAX_PAYLOAD_LEN - PAYLOAD_HEADER_LEN

# Announcement: origin (32) · sequence (8) · lifetime (2) · fragment (1) · link count (2) ·
# address count (2) · links (34 each) · addresses (16 each).
ROUTER_ID_LEN: Final = 32  # a relay's X25519 static public key, proved in the link handshake
ANNOUNCEMENT_HEADER_LEN: Final = 47
LIFETIME_OFFSET: Final = 40  # the one field a relay rewrites when it floods an announcement on
LINK_ENTRY_LEN: Final = ROUTER_ID_LEN + 2
ADDRESS_ENTRY_LEN: Final = 16  # an IPv6 address

MAX_SEQUENCE: Final = 2**64 - 1
MAX_LIFETIME: Final = 2**16 - 1  # seconds
MAX_FRAGMENT: Final = 255
MAX_COST: Final = 2**16 - 1

# How an origin fills its fragments (receivers accept any layout that fits MAX_ANNOUNCEMENT_LEN):
# fragment 0 carries the links and up to FRAGMENT0_ADDRESSES addresses, so that the links always
# have room; fragments 1..255 carry FRAGMENT_ADDRESSES addresses each.
FRAGMENT0_ADDRESSES: Final = 1024
MAX_LINKS: Final = (
    MAX_ANNOUNCEMENT_LEN - ANNOUNCEMENT_HEADER_LEN - FRAGMENT0_ADDRESSES * ADDRESS_ENTRY_LEN
) // LINK_ENTRY_LEN  # 1443 neighbors
FRAGMENT_ADDRESSES: Final = (
    MAX_ANNOUNCEMENT_LEN - ANNOUNCEMENT_HEADER_LEN
) // ADDRESS_ENTRY_LEN  # 4091
MAX_ORIGIN_ADDRESSES: Final = FRAGMENT0_ADDRESSES + MAX_FRAGMENT * FRAGMENT_ADDRESSES

# A relay that receives an announcement in its own name with a higher sequence number than its
# own jumps above it (a restart that lost its persisted sequence), but never by this much or more
# at once: such a number is forged, and following it would let a hostile relay exhaust the space.
MAX_SEQUENCE_JUMP: Final = 2**32
