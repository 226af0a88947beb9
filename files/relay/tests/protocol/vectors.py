"""Test vectors of docs/protocol.md, computed by the code. Run to print the document's blocks:

.venv/bin/python files/relay/tests/protocol/vectors.py
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from altmesh.protocol import (
    LinkConfig,
    LinkConnection,
    MemoryReplayStore,
    StaticKeyPair,
    TimestampIssuer,
    encode_key,
    network_prefix,
    node_address,
)
from altmesh.protocol.handshake import prologue

VECTOR_PREFIX = "fd12:3456:789a::/48"
VECTOR_NETWORK = "example"
WALL_TIME = 1_700_000_000.0


def _key(byte: int) -> StaticKeyPair:
    return StaticKeyPair.from_private(bytes([byte]) * 32)


def address_vectors() -> dict[str, str]:
    prefix = network_prefix(VECTOR_PREFIX)
    vectors = {"prefix": VECTOR_PREFIX}
    for n, private in enumerate((bytes(32), bytes([1]) * 32, bytes(range(32))), start=1):
        pair = StaticKeyPair.from_private(private)
        vectors[f"key{n}.private"] = pair.private.hex()
        vectors[f"key{n}.public"] = pair.public.hex()
        vectors[f"key{n}.public_base64"] = encode_key(pair.public)
        vectors[f"key{n}.address"] = str(node_address(prefix, pair.public))
    return vectors


def handshake_vectors() -> dict[str, str]:
    """One recorded link handshake with fixed static and ephemeral keys and wall time, then the
    first transport message of each side."""
    config = LinkConfig(network=VECTOR_NETWORK, prefix=network_prefix(VECTOR_PREFIX))
    initiator_key, responder_key = _key(0x11), _key(0x22)
    initiator_ephemeral, responder_ephemeral = bytes([0x33]) * 32, bytes([0x44]) * 32
    initiator = LinkConnection.initiator(
        config,
        initiator_key,
        responder_key.public,
        timestamps=TimestampIssuer(lambda: WALL_TIME),  # a fresh issuer: exactly WALL_TIME
        ephemeral_private=initiator_ephemeral,
    )
    responder = LinkConnection.responder(
        config,
        [responder_key],
        authorize=lambda _k: True,
        replay_store=MemoryReplayStore(),
        timestamps=TimestampIssuer(lambda: WALL_TIME),
        ephemeral_private=responder_ephemeral,
    )
    initiator.start(0.0)
    message1 = initiator.data_to_send(0.0)
    responder.receive_data(message1, 0.0)
    message2 = responder.data_to_send(0.0)
    initiator.receive_data(message2, 0.0)
    destination = node_address(config.prefix, responder_key.public)
    stream = initiator.open_stream(destination, 80)
    initiator.send_stream_data(stream, b"hello")
    transport1 = initiator.data_to_send(0.0)
    responder.receive_data(transport1, 0.0)
    responder.send_stream_data(stream, b"world")
    transport2 = responder.data_to_send(0.0)
    initiator.receive_data(transport2, 0.0)
    return {
        "network": VECTOR_NETWORK,
        "prefix": VECTOR_PREFIX,
        "prologue": prologue(b"altmesh-link", VECTOR_NETWORK).hex(),
        "wall_time": str(int(WALL_TIME)),
        "initiator.static_private": initiator_key.private.hex(),
        "initiator.static_public": initiator_key.public.hex(),
        "initiator.ephemeral_private": initiator_ephemeral.hex(),
        "initiator.address": str(node_address(config.prefix, initiator_key.public)),
        "responder.static_private": responder_key.private.hex(),
        "responder.static_public": responder_key.public.hex(),
        "responder.ephemeral_private": responder_ephemeral.hex(),
        "responder.address": str(destination),
        "frame1": message1.hex(),
        "frame2": message2.hex(),
        "frame3": transport1.hex(),
        "frame4": transport2.hex(),
    }


def all_vectors() -> dict[str, dict[str, str]]:
    return {"address-vectors": address_vectors(), "handshake-vector": handshake_vectors()}


def render() -> str:
    blocks = []
    for name, values in all_vectors().items():
        lines = [f"```{name}"]
        lines += [f"{key} = {value}" for key, value in values.items()]
        lines.append("```")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


if __name__ == "__main__":
    print(render())
