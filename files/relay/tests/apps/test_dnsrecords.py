"""The key TXT format and TXT quoting: one rule, shared by resolver, dashboard and tests."""

from __future__ import annotations

import dns.rdata
import dns.rdataclass
import dns.rdatatype
from altmesh.dnsrecords import (
    KEY_TXT_PREFIX,
    key_txt,
    keys_in_txt,
    txt_presentation,
    typed_txt_presentation,
)
from altmesh.protocol.keys import encode_key

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


def _strings(presentation: str) -> tuple[bytes, ...]:
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, presentation)
    return tuple(rdata.strings)  # type: ignore[attr-defined]


def test_key_txt_is_the_prefix_then_standard_base64() -> None:
    assert key_txt(KEY) == KEY_TXT_PREFIX + encode_key(KEY)
    assert keys_in_txt([_strings(txt_presentation(key_txt(KEY)))]).keys == (KEY,)


def test_a_key_split_across_strings_of_one_record_is_read() -> None:
    text = key_txt(KEY)
    found = keys_in_txt([_strings(txt_presentation(text[:20], text[20:]))])
    assert found.keys == (KEY,) and found.problems == ()


def test_a_dns_sd_instance_record_gives_its_key_string() -> None:
    found = keys_in_txt([_strings(txt_presentation("txtvers=1", "relay=r1", key_txt(KEY)))])
    assert found.keys == (KEY,)


def test_other_txt_is_ignored_and_a_bad_key_is_reported_not_hidden() -> None:
    records = [
        _strings(txt_presentation("v=spf1 -all")),
        _strings(txt_presentation(KEY_TXT_PREFIX + "not-base64")),
        _strings(txt_presentation(key_txt(OTHER))),
    ]
    found = keys_in_txt(records)
    assert found.keys == (OTHER,)
    assert len(found.problems) == 1 and "not-base64" in found.problems[0]


def test_typed_txt_is_one_string_unless_quoted() -> None:
    assert _strings(typed_txt_presentation('v=1 two "words"')) == (b'v=1 two "words"',)
    assert _strings(typed_txt_presentation('"a" "b"')) == (b"a", b"b")
    assert _strings(txt_presentation("back\\slash")) == (b"back\\slash",)
