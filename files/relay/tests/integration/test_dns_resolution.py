"""`.alt` resolution against a real named serving a DNSSEC-signed alt. zone on loopback."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from altmesh.client.dnssec import AltResolver, ResolveError, parse_trust_anchors
from altmesh.config import HostPort
from altmesh.keyfile import encode_public_key
from altmesh.protocol import StaticKeyPair, network_prefix, node_address
from altmesh.testing.named import NamedServer

from .helpers import ALTMESH, PREFIX

PREFIX_NET = network_prefix(PREFIX)
GOOD = StaticKeyPair.generate()
OTHER = StaticKeyPair.generate()


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamedServer]:
    good_address = node_address(PREFIX_NET, GOOD.public)
    records = [
        f"web 300 IN AAAA {good_address}",
        f'web 300 IN TXT "altmesh-key={encode_public_key(GOOD.public)}"',
        'web 300 IN TXT "v=something-else"',
        # The key of another node under web's address: an impostor record.
        f"impostor 300 IN AAAA {good_address}",
        f'impostor 300 IN TXT "altmesh-key={encode_public_key(OTHER.public)}"',
        f"keyless 300 IN AAAA {good_address}",
        # DNS-SD style: several key=value strings in one TXT record.
        f"sd 300 IN AAAA {good_address}",
        f'sd 300 IN TXT "txtvers=1" "altmesh-key={encode_public_key(GOOD.public)}"',
    ]
    with NamedServer.start(tmp_path_factory.mktemp("dns"), records=records) as server:
        yield server


def resolver(named: NamedServer, anchor: str | None = None) -> AltResolver:
    return AltResolver(
        [HostPort(named.address, named.port)],
        parse_trust_anchors([anchor or named.trust_anchor]),
        PREFIX_NET,
        timeout=2,
    )


def resolve(named: NamedServer, name: str, anchor: str | None = None) -> object:
    return asyncio.run(resolver(named, anchor).resolve(name))


def test_name_resolves_to_validated_address_and_key(named: NamedServer) -> None:
    result = resolve(named, "web.alt")
    assert result.address == node_address(PREFIX_NET, GOOD.public)  # type: ignore[attr-defined]
    assert result.public_key == GOOD.public  # type: ignore[attr-defined]


def test_key_in_a_multi_string_txt_record_is_found(named: NamedServer) -> None:
    result = resolve(named, "sd.alt")
    assert result.public_key == GOOD.public  # type: ignore[attr-defined]


def test_ds_trust_anchor_validates_too(named: NamedServer) -> None:
    result = resolve(named, "web.alt", anchor=named.ds)
    assert result.public_key == GOOD.public  # type: ignore[attr-defined]


def test_key_that_does_not_match_the_address_is_refused(named: NamedServer) -> None:
    with pytest.raises(ResolveError) as info:
        resolve(named, "impostor.alt")
    assert info.value.kind == "address_mismatch"


def test_wrong_trust_anchor_makes_the_zone_bogus(named: NamedServer) -> None:
    wrong = "alt. IN DS 1 13 2 " + "00" * 32
    with pytest.raises(ResolveError) as info:
        resolve(named, "web.alt", anchor=wrong)
    assert info.value.kind == "dnssec_bogus"


def test_missing_name_and_missing_key_are_clear_errors(named: NamedServer) -> None:
    with pytest.raises(ResolveError) as info:
        resolve(named, "nothere.alt")
    assert info.value.kind == "not_found"
    with pytest.raises(ResolveError) as info:
        resolve(named, "keyless.alt")
    assert info.value.kind == "not_found"


def test_unsigned_zone_is_refused(tmp_path: Path, named: NamedServer) -> None:
    records = [
        f"web 300 IN AAAA {node_address(PREFIX_NET, GOOD.public)}",
        f'web 300 IN TXT "altmesh-key={encode_public_key(GOOD.public)}"',
    ]
    with NamedServer.start(tmp_path / "unsigned", records=records, dnssec=False) as plain:
        unsigned = AltResolver(
            [HostPort(plain.address, plain.port)],
            parse_trust_anchors([named.trust_anchor]),
            PREFIX_NET,
            timeout=2,
        )
        with pytest.raises(ResolveError) as info:
            asyncio.run(unsigned.resolve("web.alt"))
    assert info.value.kind in ("dnssec_unsigned", "dnssec_bogus")


def test_altmesh_resolve_command(tmp_path: Path, named: NamedServer) -> None:
    config = tmp_path / "client.toml"
    config.write_text(
        f"""role = "client"
[network]
name = "t"
prefix = "{PREFIX}"
[node]
private_key_file = "k"
state_dir = "s"
[[relays]]
address = "127.0.0.1:1"
public_key = "{encode_public_key(OTHER.public)}"
[dns]
servers = ["{named.address}:{named.port}"]
trust_anchor = "{named.trust_anchor}"
"""
    )
    good = subprocess.run(
        [*ALTMESH, "resolve", "--config", str(config), "web.alt"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert good.returncode == 0, good.stderr
    assert encode_public_key(GOOD.public) in good.stdout
    bad = subprocess.run(
        [*ALTMESH, "resolve", "--config", str(config), "impostor.alt"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 1
    assert "address_mismatch" in bad.stderr and "Traceback" not in bad.stderr
