"""Every number and string that defines the altmesh wire protocol, in one place.

docs/protocol.md is the normative description of each; change one here only together with it.
"""

from __future__ import annotations

from typing import Final

PROTOCOL_VERSION: Final = 1
NOISE_PROTOCOL_NAME: Final = b"Noise_IK_25519_ChaChaPoly_BLAKE2s"

# Prologues: a fixed label, the protocol version and the network name, so that handshakes of two
# networks (or of links and end-to-end sessions) can never be mixed up.
LINK_PROLOGUE_LABEL: Final = b"altmesh-link"
E2E_PROLOGUE_LABEL: Final = b"altmesh-e2e"
MAX_NETWORK_NAME_LEN: Final = 255

# Framing (Noise spec section 13): 2-byte big-endian length, then one Noise message.
LENGTH_PREFIX_LEN: Final = 2
MAX_MESSAGE_LEN: Final = 65535
TAG_LEN: Final = 16
MAX_PLAINTEXT_LEN: Final = MAX_MESSAGE_LEN - TAG_LEN  # 65519
KEY_LEN: Final = 32
# Noise transport counters: 2^64 - 1 is reserved, so a key seals at most that many messages.
MAX_NONCE: Final = 2**64 - 1

# Handshake payloads (plaintext inside the Noise handshake messages).
TAI64N_LEN: Final = 12
ADDRESS_LEN: Final = 16
INITIATOR_PAYLOAD_LEN: Final = 1 + 1 + TAI64N_LEN + ADDRESS_LEN + 4 + 4  # 38
RESPONDER_PAYLOAD_LEN: Final = 1 + 1 + ADDRESS_LEN + 4 + 4  # 26
# IK message 1: e (32) + encrypted s (32 + 16) + encrypted payload (+16).
HANDSHAKE_INIT_LEN: Final = KEY_LEN + KEY_LEN + TAG_LEN + INITIATOR_PAYLOAD_LEN + TAG_LEN  # 134
# IK message 2: e (32) + encrypted payload (+16).
HANDSHAKE_RESPONSE_LEN: Final = KEY_LEN + RESPONDER_PAYLOAD_LEN + TAG_LEN  # 74
E2E_INIT_PAYLOAD_LEN: Final = 1 + 1 + TAI64N_LEN  # 14
E2E_RESPONSE_PAYLOAD_LEN: Final = 1 + 1  # 2
E2E_HANDSHAKE_INIT_LEN: Final = KEY_LEN + KEY_LEN + TAG_LEN + E2E_INIT_PAYLOAD_LEN + TAG_LEN  # 110
E2E_HANDSHAKE_RESPONSE_LEN: Final = KEY_LEN + E2E_RESPONSE_PAYLOAD_LEN + TAG_LEN  # 50

# Handshake payload flags: set in the handshakes that run inside a link to replace its keys.
HANDSHAKE_FLAG_REKEY: Final = 0x01
# Set by a node in the first handshake of a link that only measures the relay (RTT probes): the
# relay answers its PINGs but does not attach the node there (no route to the node's address).
HANDSHAKE_FLAG_PROBE: Final = 0x02

# Address derivation: ULA /48 + the first 80 bits of BLAKE2s-256(label || public key).
ADDRESS_HASH_LABEL: Final = b"altmesh-address-v1"
ADDRESS_PREFIX_LEN: Final = 48

# TAI64N: label 2^62 + TAI seconds (UTC + 10 s, as libtai and WireGuard), then nanoseconds.
TAI64_BASE: Final = (1 << 62) + 10

# Timers (seconds) and limits; LinkConfig carries the configurable ones.
REKEY_AFTER_TIME: Final = 120.0
REJECT_AFTER_TIME: Final = 180.0
REKEY_AFTER_MESSAGES: Final = 2**28
REJECT_AFTER_MESSAGES: Final = 2**60
KEEPALIVE_INTERVAL: Final = 15.0
IDLE_TIMEOUT: Final = 60.0
HANDSHAKE_TIMEOUT: Final = 10.0

# Flow control defaults: each stream's receive window, and how many streams a peer may hold open.
# Memory a peer can make us hold for one link is bounded by max_streams * stream_window.
DEFAULT_STREAM_WINDOW: Final = 256 * 1024
DEFAULT_MAX_STREAMS: Final = 1024
MAX_STREAM_WINDOW: Final = 2**30
MAX_STREAMS_LIMIT: Final = 2**20
# The peer gets credit back once at least this fraction of its window has been consumed.
WINDOW_UPDATE_FRACTION: Final = 4

# Records: 1-byte type, 2-byte big-endian body length, body.
RECORD_HEADER_LEN: Final = 3
STREAM_ID_LEN: Final = 4
MAX_STREAM_ID: Final = 2**32 - 1
MAX_DATA_PER_RECORD: Final = MAX_PLAINTEXT_LEN - RECORD_HEADER_LEN - STREAM_ID_LEN  # 65512
MAX_REASON_LEN: Final = 512
MAX_ROUTE_INFO_LEN: Final = MAX_PLAINTEXT_LEN - RECORD_HEADER_LEN
# A ROUTE_INFO payload starts with this version byte, then one of RouteInfoType.
ROUTE_INFO_VERSION: Final = 1
PING_ID_LEN: Final = 8
MAX_UNANSWERED_PINGS: Final = 16  # our PINGs we remember
MAX_UNSENT_PONGS: Final = 16  # the peer's PINGs we answer between two writes


class RecordType:
    """Record type codes (first byte of every record)."""

    OPEN: Final = 0x01
    DATA: Final = 0x02
    FIN: Final = 0x03
    RESET: Final = 0x04
    WINDOW: Final = 0x05
    PING: Final = 0x06
    PONG: Final = 0x07
    ROUTE_INFO: Final = 0x08
    REKEY_INIT: Final = 0x09
    REKEY_REPLY: Final = 0x0A
    REKEY_SWITCH: Final = 0x0B
    CLOSE: Final = 0x0C
    RELAY_OPEN: Final = 0x0D  # OPEN with a hop limit: only between relays (mesh forwarding)


class RouteInfoType:
    """The second byte of a ROUTE_INFO payload: what the payload is."""

    ANNOUNCEMENTS: Final = 1  # the routing engine's link-state announcements, between relays
    STREAM_PATH: Final = 2  # relay -> node: the relays that carry one of the node's streams


# Reset codes 0xFF00..0xFFFF belong to the core; applications use 0x0000..0xFEFF (ResetCode).
RESET_FLOW_CONTROL: Final = 0xFF01
RESET_CANCELLED: Final = 0xFF02
CORE_RESET_CODES: Final = 0xFF00  # the first code of the core's range


class ResetCode:
    """The RESET codes the reference relay, client and service send (docs/protocol.md, 6.1).

    0..15 are sent by the end nodes of a stream, 16..31 by relays. A relay passes a code it
    receives from one half of a routed stream on to the other half unchanged, so the client
    sees the service's own code, however many relays are on the path.
    """

    GIVEN_UP: Final = 0  # the client gave the stream up (opening failed or timed out, stopping)
    LOCAL_CLOSED: Final = 1  # the local TCP connection closed before the stream ended
    E2E_FAILED: Final = 2  # the stream's end-to-end session failed (the reason names the kind)
    TARGET_UNREACHABLE: Final = 3  # the service's target did not accept the connection
    PORT_REFUSED: Final = 4  # no service here, or the port is not published
    NO_ROUTE: Final = 16  # no relay announces the destination address (unknown destination)
    LINK_LOST: Final = 17  # a link of the path was lost (a relay or the destination went away)
    UNREACHABLE: Final = 18  # the destination is announced, but no path leads to it now
    HOP_LIMIT: Final = 19  # the stream would cross more relay links than its hop limit allows
    NEXT_HOP_BUSY: Final = 20  # the next link of the path cannot take another stream now
    PATH_FAULT: Final = 21  # a link of the path reset the stream for a protocol fault (0xFFxx)
    RELAY_LIMIT: Final = 22  # a relay's limits: its fair share of streams, or its buffer budget


# RELAY_OPEN's hop limit: how many more relay links the stream may cross after this one.
MAX_HOPS_LEFT: Final = 255
DEFAULT_LINK_WINDOW: Final = 2 * DEFAULT_MAX_STREAMS * DEFAULT_STREAM_WINDOW  # 512 MiB ceiling
# End-to-end handshakes of many streams may reach a service slightly out of order (different
# streams, relay scheduling): a timestamp up to this much older than the newest accepted one is
# still accepted once (remembered in memory), see replay.ReorderWindow.
E2E_REORDER_WINDOW: Final = 10.0
E2E_REORDER_KEYS: Final = 10_000
# A responder with a freshness window refuses handshake timestamps more than this far from its
# wall clock (older or newer), so it may forget every key whose last accepted timestamp is older:
# the replay store stays bounded (docs/protocol.md section 4.5).
HANDSHAKE_FRESHNESS: Final = 300.0
