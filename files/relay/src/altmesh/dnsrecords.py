"""The DNS record formats of an altmesh network, in one place.

Every component that writes or reads these records imports them from here: the client's resolver,
the dashboard's publisher and zone editor, and the tests that pin the Ansible role's copies (an
Ansible module runs on the managed host and cannot import this package).

- A node's key record is a TXT RRset at its name whose record reads `altmesh-key=<base64 key>`,
  either as the whole record (its strings concatenated, so a long value may be split across
  strings) or as one of its strings (DNS-SD instance records: `"txtvers=1" "relay=r1"
  "altmesh-key=..."`).
- The network's relays are a DNS-SD service set (RFC 6763) in the zone: `_altmesh._tcp.alt. PTR
  <relay>._altmesh._tcp.alt.` for each relay, and at each instance an SRV RRset (its endpoints)
  and a TXT record `"txtvers=1" "relay=<relay>" "altmesh-key=<base64 key>"`.
- TXT data typed by a person is one string unless it is already quoted: `v=1 two words` is the
  single string `"v=1 two words"`, not three strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from altmesh.protocol.keys import decode_key, encode_key

KEY_TXT_PREFIX = "altmesh-key="

# A relay's name: one DNS label (it names `<relay>.alt.` and `<relay>._altmesh._tcp.alt.`), the
# rule the dashboard applies at registration (a test pins the two).
RELAY_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"

RELAY_SERVICE_LABELS = ("_altmesh", "_tcp")  # the DNS-SD service name, under the zone's apex
RELAY_TXT_PREFIX = "relay="
TXT_VERSION = "txtvers=1"


def key_txt(public_key: bytes) -> str:
    """The one string of a node's key TXT record: `altmesh-key=<base64>`."""
    return KEY_TXT_PREFIX + encode_key(public_key)


def relay_instance_txt(relay_name: str, public_key: bytes) -> tuple[str, ...]:
    """The strings of a relay's DNS-SD instance TXT record."""
    return (TXT_VERSION, RELAY_TXT_PREFIX + relay_name, key_txt(public_key))


def relay_names_in_txt(records: Iterable[Sequence[bytes]]) -> tuple[str, ...]:
    """The distinct `relay=NAME` values of a DNS-SD instance's TXT RRset, in record order."""
    names: list[str] = []
    prefix = RELAY_TXT_PREFIX.encode("ascii")
    for strings in records:
        for string in strings:
            if bytes(string).startswith(prefix):
                name = bytes(string)[len(prefix) :].decode("ascii", "replace")
                if name not in names:
                    names.append(name)
    return tuple(names)


def quote_txt_string(text: str) -> str:
    """One TXT character-string in zone-file (presentation) form, quoted and escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def txt_presentation(*strings: str) -> str:
    """A TXT record's data in zone-file form from its strings."""
    return " ".join(quote_txt_string(s) for s in strings)


def typed_txt_presentation(text: str) -> str:
    """TXT data as a person types it: kept as is when quoted, else one string."""
    stripped = text.strip()
    if stripped.startswith('"'):
        return stripped
    return quote_txt_string(stripped)


@dataclass(frozen=True)
class KeyRecords:
    """What a name's TXT RRset says about its key."""

    keys: tuple[bytes, ...]  # the distinct valid keys, in record order
    problems: tuple[str, ...]  # one line per `altmesh-key=` string that is not a valid key


def keys_in_txt(records: Iterable[Sequence[bytes]]) -> KeyRecords:
    """The keys of a TXT RRset, given each record's strings.

    A record counts once: either its concatenation or one of its strings starts with
    `altmesh-key=`. TXT records without that prefix are ignored (a name may carry other TXT).
    """
    keys: list[bytes] = []
    problems: list[str] = []
    for strings in records:
        parts = [bytes(s) for s in strings]
        candidates = [b"".join(parts), *parts]
        texts = [c.decode("ascii", "replace") for c in candidates]
        marked = [t for t in texts if t.startswith(KEY_TXT_PREFIX)]
        if not marked:
            continue
        found: bytes | None = None
        last_problem = ""
        for text in marked:
            try:
                found = decode_key(text[len(KEY_TXT_PREFIX) :])
                break
            except ValueError as error:
                last_problem = f"{text[:80]!r}: {error}"
        if found is None:
            problems.append(last_problem)
        elif found not in keys:
            keys.append(found)
    return KeyRecords(tuple(keys), tuple(problems))
