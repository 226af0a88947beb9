"""How the record module reads the inventory's records: pure logic, no server needed.

A record an operator gets wrong must stop the run with a message that names the record and the
problem, before any update is sent.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import dns.name
import pytest

LIBRARY = Path(__file__).resolve().parents[3] / "roles" / "bind_alt" / "library"


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bind_alt_zone_records", LIBRARY / "bind_alt_zone_records.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


records_module = load_module()
ZONE = dns.name.from_text("alt.")


def desired(records: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, set[str]]]:
    parsed = records_module.desired_rrsets(records, ZONE, 3600)
    return {
        key: (ttl, {rdata.to_text() for rdata in rdatas}) for key, (ttl, rdatas) in parsed.items()
    }


def test_relative_names_and_values_are_completed_with_the_zone() -> None:
    assert desired(
        [
            {"name": "@", "type": "mx", "value": "10 mail"},
            {"name": "_altmesh._tcp", "type": "SRV", "value": "10 5 7443 www"},
            {"name": "web", "type": "CNAME", "value": "www.alt."},
        ]
    ) == {
        ("alt.", "MX"): (3600, {"10 mail.alt."}),
        ("_altmesh._tcp.alt.", "SRV"): (3600, {"10 5 7443 www.alt."}),
        ("web.alt.", "CNAME"): (3600, {"www.alt."}),
    }


def test_entries_with_the_same_name_and_type_form_one_rrset() -> None:
    assert desired(
        [
            {"name": "mail", "type": "A", "value": "192.0.2.1", "ttl": 300},
            {"name": "mail", "type": "A", "values": ["192.0.2.2", "192.0.2.1"], "ttl": 300},
        ]
    ) == {("mail.alt.", "A"): (300, {"192.0.2.1", "192.0.2.2"})}


def test_a_txt_value_with_spaces_and_quotes_is_one_string() -> None:
    parsed = desired([{"name": "www", "type": "TXT", "value": 'key "abc" def'}])
    assert parsed == {("www.alt.", "TXT"): (3600, {'"key \\"abc\\" def"'})}


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {"name": "www", "type": "A"},
            "record #1 (www A): give exactly one of 'value' or 'values'",
        ),
        ({"name": "www", "type": "A", "value": "1.2.3", "values": ["1.2.3.4"]}, "exactly one of"),
        ({"type": "A", "value": "192.0.2.1"}, "field 'name' is missing"),
        ({"name": "www", "type": "BOGUS", "value": "x"}, "unknown record type 'BOGUS'"),
        (
            {"name": "www", "type": "A", "value": "300.1.1.1"},
            "record #1 (www A): value '300.1.1.1' is not valid A data",
        ),
        ({"name": "www", "type": "AAAA", "value": "192.0.2.1"}, "is not valid AAAA data"),
        ({"name": "www", "type": "MX", "value": "mail"}, "is not valid MX data"),
        (
            {"name": "@", "type": "SOA", "value": "a b 1 2 3 4 5"},
            "type SOA is managed by BIND itself",
        ),
        (
            {"name": "@", "type": "DNSKEY", "value": "257 3 13 AA=="},
            "type DNSKEY is managed by BIND itself",
        ),
        ({"name": "www.example.com.", "type": "A", "value": "192.0.2.1"}, "outside the zone alt."),
        (
            {"name": "www", "type": "A", "value": "192.0.2.1", "ttl": "soon"},
            "ttl must be an integer",
        ),
        ({"name": "www", "type": "A", "values": []}, "'values' must be a non-empty list"),
    ],
)
def test_a_bad_record_is_refused_with_a_message_naming_it(
    record: dict[str, Any], message: str
) -> None:
    with pytest.raises(records_module.RecordError, match=re.escape(message)):
        desired([record])


def test_a_cname_must_stand_alone() -> None:
    with pytest.raises(
        records_module.RecordError, match=re.escape("www.alt. has a CNAME and a A record")
    ):
        desired(
            [
                {"name": "www", "type": "CNAME", "value": "web"},
                {"name": "www", "type": "A", "value": "192.0.2.1"},
            ]
        )


def test_one_rrset_declared_with_two_ttls_is_refused() -> None:
    with pytest.raises(records_module.RecordError, match="declared twice with different TTLs"):
        desired(
            [
                {"name": "www", "type": "A", "value": "192.0.2.1", "ttl": 60},
                {"name": "www", "type": "A", "value": "192.0.2.2", "ttl": 120},
            ]
        )


def test_the_key_file_of_tsig_keygen_is_read(tmp_path: Path) -> None:
    key_file = tmp_path / "update.key"
    key_file.write_text(
        'key "altmesh-ansible" {\n\talgorithm hmac-sha256;\n\tsecret "c2VjcmV0c2VjcmV0";\n};\n'
    )
    keyring, key_name, algorithm = records_module.read_tsig_key(str(key_file))
    assert key_name == dns.name.from_text("altmesh-ansible")
    assert algorithm == "hmac-sha256"
    assert key_name in keyring


def test_an_unreadable_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        records_module.RecordError, match=r"cannot read the TSIG key file .*missing\.key"
    ):
        records_module.read_tsig_key(str(tmp_path / "missing.key"))
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    with pytest.raises(records_module.RecordError, match="holds no key"):
        records_module.read_tsig_key(str(garbage))
