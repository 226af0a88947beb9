"""The ROUTE_INFO payload: what encodes decodes to the same, and every malformed input is a typed
ProtocolError naming what is wrong."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from altmesh.mesh import (
    Announcement,
    MalformedAnnouncement,
    UnsupportedRoutingVersion,
    decode_payload,
    encode_announcement,
    encode_payload,
)
from altmesh.mesh.constants import (
    ANNOUNCEMENT_HEADER_LEN,
    FRAGMENT0_ADDRESSES,
    FRAGMENT_ADDRESSES,
    MAX_ANNOUNCEMENT_LEN,
    MAX_LINKS,
    MAX_PAYLOAD_LEN,
    ROUTER_ID_LEN,
)
from altmesh.mesh.wire import pack_payloads
from altmesh.protocol.constants import KEY_LEN, MAX_ROUTE_INFO_LEN
from altmesh.protocol.errors import ProtocolError
from hypothesis import given
from hypothesis import strategies as st

from .helpers import PREFIX, announcement, payload, rid

ids = st.binary(min_size=32, max_size=32)
announcements = st.builds(
    lambda origin, sequence, lifetime, fragment, links, addresses: Announcement(
        origin=origin,
        sequence=sequence,
        lifetime=lifetime,
        fragment=fragment,
        links=tuple(sorted((n, c) for n, c in links.items() if n != origin and fragment == 0)),
        addresses=tuple(sorted(set(addresses))),
    ),
    ids,
    st.integers(1, 2**64 - 1),
    st.integers(1, 2**16 - 1),
    st.integers(0, 255),
    st.dictionaries(ids, st.integers(1, 2**16 - 1), max_size=8),
    st.lists(st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1)), max_size=8),
)


@given(st.lists(announcements, min_size=1, max_size=5))
def test_every_encodable_payload_decodes_to_what_was_encoded(items: list[Announcement]) -> None:
    assert decode_payload(encode_payload([encode_announcement(a) for a in items])) == items


def test_layout_sizes_are_those_of_docs_routing_md() -> None:
    assert ROUTER_ID_LEN == KEY_LEN  # a relay id is its static public key
    assert MAX_PAYLOAD_LEN == MAX_ROUTE_INFO_LEN == 65516
    assert ANNOUNCEMENT_HEADER_LEN == 47
    assert (MAX_LINKS, FRAGMENT0_ADDRESSES, FRAGMENT_ADDRESSES) == (1443, 1024, 4091)
    data = encode_announcement(announcement(1, 7, links={2: 30}, addresses=[5]))
    assert len(data) == 47 + 34 + 16
    origin, sequence, lifetime, fragment, links, addresses = struct.unpack_from(">32sQHBHH", data)
    assert (origin, sequence, lifetime, fragment, links, addresses) == (rid(1), 7, 3600, 0, 1, 1)
    assert data[47:79] == rid(2) and data[79:81] == (30).to_bytes(2, "big")
    assert data[81:] == PREFIX[5].packed


def test_a_full_fragment_fits_one_payload() -> None:
    biggest = Announcement(
        origin=rid(1),
        sequence=1,
        lifetime=1,
        fragment=0,
        links=tuple(sorted((rid(1000 + n), 1) for n in range(MAX_LINKS))),
        addresses=tuple(PREFIX[n] for n in range(FRAGMENT0_ADDRESSES)),
    )
    assert len(encode_payload([encode_announcement(biggest)])) <= MAX_PAYLOAD_LEN
    other = Announcement(rid(1), 1, 1, 1, addresses=tuple(PREFIX[n] for n in range(4091)))
    assert len(encode_payload([encode_announcement(other)])) <= MAX_PAYLOAD_LEN


def test_packing_splits_announcements_over_payloads_within_the_record_limit() -> None:
    big = encode_announcement(
        Announcement(rid(1), 1, 60, 1, addresses=tuple(PREFIX[n] for n in range(3000)))
    )
    small = encode_announcement(announcement(2, 1, links={3: 10}))
    payloads = pack_payloads([small, big, small, big, big])
    assert all(len(p) <= MAX_ROUTE_INFO_LEN for p in payloads)
    # 81 + 48047 + 81 bytes fit one payload; two of 48047 do not.
    assert [len(decode_payload(p)) for p in payloads] == [3, 1, 1]


def _corrupt(offset: int, value: bytes) -> bytes:
    good = bytearray(payload(announcement(1, 7, links={2: 30, 3: 40}, addresses=[5, 6])))
    good[offset : offset + len(value)] = value
    return bytes(good)


LINK0 = 4 + ANNOUNCEMENT_HEADER_LEN
ADDRESSES = LINK0 + 2 * 34


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\x01\x00", "shorter than its 4-byte header"),
        (_corrupt(1, b"\x07"), "unknown type 7"),
        (_corrupt(2, b"\x00\x00"), "announcement count is 0"),
        (_corrupt(2, b"\x00\x02"), "announcement 1 of 2: header truncated"),
        (_corrupt(4 + 32, bytes(8)), "sequence 0"),
        (_corrupt(4 + 40, bytes(2)), "lifetime 0"),
        (_corrupt(4 + 42, b"\x01"), "2 links outside fragment 0"),
        (_corrupt(4 + 43, b"\x00\x09"), "run 238 bytes past the end"),
        (_corrupt(4 + 45, b"\x00\x01"), "16 bytes after the last of 1 announcements"),
        (_corrupt(LINK0, rid(3)), "link 1 is not in strictly ascending neighbor order"),
        (_corrupt(LINK0 + 32, b"\x00\x00"), "link 0 has cost 0"),
        (_corrupt(ADDRESSES, PREFIX[6].packed), "address 1 is not in strictly ascending order"),
        (payload(announcement(1, 1)) + b"\x00", "1 bytes after the last of 1 announcements"),
        (b"\x01\x01\x00\x01" + b"\x00" * (MAX_PAYLOAD_LEN - 3), "more than 65516"),
    ],
)
def test_a_malformed_payload_is_refused_naming_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(MalformedAnnouncement, match=message) as caught:
        decode_payload(data)
    assert caught.value.kind == "route_malformed"
    assert isinstance(caught.value, ProtocolError)


def test_a_link_to_the_origin_itself_is_malformed() -> None:
    data = bytearray(payload(announcement(1, 7, links={2: 30})))
    data[LINK0 : LINK0 + 32] = rid(1)
    with pytest.raises(MalformedAnnouncement, match="link 0 is to the origin"):
        decode_payload(bytes(data))


def test_an_address_outside_the_network_is_malformed_when_the_prefix_is_known() -> None:
    outside = Announcement(rid(1), 1, 60, 0, addresses=(ipaddress.IPv6Address("fd00:9999::1"),))
    data = payload(outside)
    assert decode_payload(data)[0].addresses == outside.addresses  # no prefix given: accepted
    with pytest.raises(MalformedAnnouncement, match=r"fd00:9999::1\) is outside the network"):
        decode_payload(data, prefix=PREFIX)


def test_another_version_is_refused_as_such() -> None:
    with pytest.raises(UnsupportedRoutingVersion, match="version 2, this relay speaks 1") as caught:
        decode_payload(_corrupt(0, b"\x02"))
    assert caught.value.kind == "route_version"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Announcement(b"short", 1, 1, 0), "origin must be 32 bytes"),
        (Announcement(rid(1), 0, 1, 0), "sequence 0 is outside"),
        (Announcement(rid(1), 1, 0, 0), "lifetime 0 is outside"),
        (Announcement(rid(1), 1, 1, 256), "fragment 256 is outside"),
        (Announcement(rid(1), 1, 1, 1, links=((rid(2), 1),)), "only fragment 0 carries links"),
        (Announcement(rid(1), 1, 1, 0, links=((rid(1), 1),)), "another relay's 32-byte id"),
        (Announcement(rid(1), 1, 1, 0, links=((rid(2), 0),)), "cost 0 is outside"),
        (
            Announcement(rid(1), 1, 1, 0, addresses=(PREFIX[2], PREFIX[1])),
            "strictly ascending",
        ),
        (
            Announcement(rid(1), 1, 1, 1, addresses=tuple(PREFIX[n] for n in range(4095))),
            f"exceeds {MAX_ANNOUNCEMENT_LEN}",
        ),
    ],
)
def test_encoding_what_the_layout_cannot_carry_is_a_caller_error(
    bad: Announcement, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode_announcement(bad)
