"""A link's first handshake (docs/protocol.md section 4): the payloads this node sends and the
checks of the peer's, on top of the Noise IK handshake of `handshake.py`.

The rekey handshakes of `rekey.py` use the same payloads with the REKEY flag.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from altmesh.protocol.address import address_matches, node_address
from altmesh.protocol.errors import (
    AddressMismatch,
    HandshakeError,
    KeyRefused,
    ReplayedHandshake,
)
from altmesh.protocol.handshake import (
    FLAG_PROBE,
    FLAG_REKEY,
    InitiatorHandshake,
    InitiatorPayload,
    ResponderHandshake,
    ResponderPayload,
    SessionKeys,
)
from altmesh.protocol.keys import StaticKeyPair
from altmesh.protocol.link_config import LinkConfig
from altmesh.protocol.replay import ReplayStore, replay_refusal


def initiator_payload(
    config: LinkConfig, local: StaticKeyPair, *, flags: int, timestamp: bytes
) -> bytes:
    """Payload 1 as this node sends it: its address and its stream window and limit."""
    return InitiatorPayload(
        flags=flags,
        timestamp=timestamp,
        address=node_address(config.prefix, local.public),
        stream_window=config.stream_window,
        max_streams=config.advertised_max_streams,
    ).encode()


def responder_payload(config: LinkConfig, local: StaticKeyPair, *, flags: int) -> bytes:
    """Payload 2 as this node sends it."""
    return ResponderPayload(
        flags=flags,
        address=node_address(config.prefix, local.public),
        stream_window=config.stream_window,
        max_streams=config.advertised_max_streams,
    ).encode()


@dataclass(frozen=True)
class Established:
    """What a completed first handshake gives the link."""

    keys: SessionKeys
    local: StaticKeyPair  # responders: the key the peer addressed (rotation)
    remote_static: bytes
    remote_address: ipaddress.IPv6Address
    peer_stream_window: int
    peer_max_streams: int
    reply: bytes | None  # the responder's message 2, to be sent; None for initiators
    probe: bool = False  # responders: the initiator only measures (HANDSHAKE_FLAG_PROBE)


def respond(
    config: LinkConfig,
    prologue_bytes: bytes,
    local_keys: Sequence[StaticKeyPair],
    message: bytes,
    *,
    authorize: Callable[[bytes], bool],
    replay_store: ReplayStore,
    ephemeral_private: bytes | None,
) -> Established:
    """Check message 1 in the order of docs/protocol.md 4.4 and answer it.

    The replay store is updated only once every other check passed.
    """
    responder = ResponderHandshake(prologue_bytes, local_keys, ephemeral_private=ephemeral_private)
    payload = InitiatorPayload.decode(responder.read_init(message))
    assert responder.local is not None and responder.remote_static is not None
    remote = responder.remote_static
    if payload.flags & FLAG_REKEY:
        raise HandshakeError("rekey handshake sent as the first message of a link")
    if not address_matches(payload.address, config.prefix, remote):
        raise AddressMismatch(
            f"peer claims address {payload.address}, but its key's address in this network "
            f"is {node_address(config.prefix, remote)}"
        )
    if not authorize(remote):
        raise KeyRefused("the peer's static key is not allowed on this node")
    refusal = replay_refusal(replay_store, remote, payload.timestamp)
    if refusal is not None:
        raise ReplayedHandshake(refusal)
    reply, keys = responder.write_response(responder_payload(config, responder.local, flags=0))
    return Established(
        keys=keys,
        local=responder.local,
        remote_static=remote,
        remote_address=payload.address,
        peer_stream_window=payload.stream_window,
        peer_max_streams=payload.max_streams,
        reply=reply,
        probe=bool(payload.flags & FLAG_PROBE),
    )


def complete(config: LinkConfig, handshake: InitiatorHandshake, message: bytes) -> Established:
    """Check message 2 (the initiator's side) and finish the handshake."""
    payload_bytes, keys = handshake.read_response(message)
    payload = ResponderPayload.decode(payload_bytes)
    if payload.flags != 0:
        raise HandshakeError("rekey flag set in the first handshake of a link")
    if not address_matches(payload.address, config.prefix, handshake.remote_public):
        raise AddressMismatch(
            f"responder claims address {payload.address}, which its key does not give"
        )
    return Established(
        keys=keys,
        local=handshake.local,
        remote_static=handshake.remote_public,
        remote_address=payload.address,
        peer_stream_window=payload.stream_window,
        peer_max_streams=payload.max_streams,
        reply=None,
    )
