"""Relays of the DNS-SD set as mesh peers, and as saved in the relay's state."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from altmesh.client.dnssec import RelayRecord, RelayTarget
from altmesh.config import HostPort
from altmesh.relay.discovery import spec_from_record, spec_from_stored, stored_from_spec
from altmesh.state import StateDB, StoredPeer

KEY, OLD = b"k" * 32, b"o" * 32


def record() -> RelayRecord:
    in_zone = RelayTarget(
        0,
        10,
        7400,
        "ep0.r1.alt",
        (ipaddress.ip_address("192.0.2.10"), ipaddress.ip_address("2001:db8::10")),
        True,
    )
    outside = RelayTarget(1, 5, 7401, "relay1.example.net", (), False)
    return RelayRecord("r1", "r1._altmesh._tcp.alt.", (KEY, OLD), (in_zone, outside), 60)


def test_a_relay_record_gives_an_endpoint_per_validated_address_then_outside_names() -> None:
    spec = spec_from_record(record())
    assert spec.name == "r1" and spec.source == "dns"
    assert spec.public_keys == (KEY, OLD)  # the current key first, then the rotating one
    assert spec.endpoints == (
        HostPort("192.0.2.10", 7400),
        HostPort("2001:db8::10", 7400),
        HostPort("relay1.example.net", 7401),
    )


def test_a_peer_saved_in_the_state_comes_back_the_same(tmp_path: Path) -> None:
    spec = spec_from_record(record())
    state = StateDB(tmp_path)
    state.replace_mesh_peers([stored_from_spec(spec)])
    state.close()
    (saved,) = StateDB(tmp_path).mesh_peers()
    assert spec_from_stored(saved) == spec


def test_a_saved_peer_with_an_unreadable_endpoint_is_not_used() -> None:
    assert spec_from_stored(StoredPeer("r1", (KEY,), ("not an endpoint:x",))) is None
    assert spec_from_stored(StoredPeer("r1", (KEY,), ())) is None
