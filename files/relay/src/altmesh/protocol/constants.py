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


# Reset codes 0xFF00..0xFFFF belong to the core; applications use 0x0000..0xFEFF.
RESET_FLOW_CONTROL: Final = 0xFF01
RESET_CANCELLED: Final = 0xFF02
DEFAULT_LINK_WINDOW: Final = 2 * DEFAULT_MAX_STREAMS * DEFAULT_STREAM_WINDOW  # 512 MiB ceiling
# End-to-end handshakes of many streams may reach a service slightly out of order (different
# streams, relay scheduling): a timestamp up to this much older than the newest accepted one is
# still accepted once (remembered in memory), see replay.ReorderWindow.
E2E_REORDER_WINDOW: Final = 10.0
E2E_REORDER_KEYS: Final = 10_000
