"""The test vectors printed in docs/protocol.md are reproduced by the code, byte for byte."""

from __future__ import annotations

import ipaddress
import re
import warnings
from pathlib import Path

import pytest
from altmesh.protocol import constants as C
from noise.connection import Keypair, NoiseConnection  # type: ignore[import-untyped]

from .vectors import all_vectors, handshake_vectors

# noiseprotocol warns whenever an ephemeral key is fixed; recorded vectors need exactly that.
pytestmark = pytest.mark.filterwarnings("ignore:One of ephemeral keypairs:UserWarning")

SPEC = Path(__file__).resolve().parents[4] / "docs" / "protocol.md"


def document_vectors() -> dict[str, dict[str, str]]:
    text = SPEC.read_text(encoding="utf-8")
    blocks: dict[str, dict[str, str]] = {}
    for name, body in re.findall(r"```([a-z-]+-vectors?)\n(.*?)```", text, flags=re.S):
        values = {}
        for line in body.strip().splitlines():
            key, _, value = line.partition(" = ")
            values[key.strip()] = value.strip()
        blocks[name] = values
    return blocks


def test_specification_vectors_are_reproduced_by_the_code() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # noiseprotocol warns about fixed ephemerals
        computed = all_vectors()
    documented = document_vectors()
    assert set(documented) == {"address-vectors", "handshake-vector"}
    assert documented == computed


def test_recorded_handshake_is_plain_noise_ik_including_the_transport() -> None:
    """An independent run of noiseprotocol alone gives the same bytes: altmesh's transport
    (cryptography with explicit counters) is wire-compatible with Noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # noiseprotocol warns about fixed ephemerals
        vector = handshake_vectors()
    initiator = NoiseConnection.from_name(C.NOISE_PROTOCOL_NAME)
    responder = NoiseConnection.from_name(C.NOISE_PROTOCOL_NAME)
    prologue = bytes.fromhex(vector["prologue"])
    for conn, side in ((initiator, "initiator"), (responder, "responder")):
        conn.set_prologue(prologue)
        conn.set_keypair_from_private_bytes(
            Keypair.STATIC, bytes.fromhex(vector[f"{side}.static_private"])
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            conn.set_keypair_from_private_bytes(
                Keypair.EPHEMERAL, bytes.fromhex(vector[f"{side}.ephemeral_private"])
            )
    initiator.set_keypair_from_public_bytes(
        Keypair.REMOTE_STATIC, bytes.fromhex(vector["responder.static_public"])
    )
    initiator.set_as_initiator()
    responder.set_as_responder()
    initiator.start_handshake()
    responder.start_handshake()
    frame1 = bytes.fromhex(vector["frame1"])
    payload1 = responder.read_message(frame1[2:])
    assert len(payload1) == C.INITIATOR_PAYLOAD_LEN
    assert bytes(initiator.write_message(bytes(payload1))) == frame1[2:]
    assert bytes(payload1) == bytes.fromhex(  # as decoded in docs/protocol.md 12.2
        "0100400000006553f10a00000000fd123456789a96bac6a01f352f987b5e0004000000000400"
    )
    payload2 = (
        b"\x01\x00"
        + ipaddress.IPv6Address(vector["responder.address"]).packed
        + C.DEFAULT_STREAM_WINDOW.to_bytes(4, "big")
        + C.DEFAULT_MAX_STREAMS.to_bytes(4, "big")
    )
    frame2 = bytes.fromhex(vector["frame2"])
    assert bytes(responder.write_message(payload2)) == frame2[2:]
    assert bytes(initiator.read_message(frame2[2:])) == payload2
    frame3 = bytes.fromhex(vector["frame3"])
    plaintext = responder.decrypt(frame3[2:])
    assert initiator.encrypt(plaintext) == frame3[2:]
    assert plaintext == bytes.fromhex(
        "01001600000001fd123456789a4fe2cd3ae8778a6951ca00500200090000000168656c6c6f"
    )
    frame4 = bytes.fromhex(vector["frame4"])
    assert b"world" in initiator.decrypt(frame4[2:])
