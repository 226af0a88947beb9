"""Shared pieces of the fuzz targets: fixed keys, a fresh established link pair, seeds."""

from __future__ import annotations

from altmesh.protocol import (
    LinkConfig,
    LinkConnection,
    MemoryReplayStore,
    StaticKeyPair,
    network_prefix,
)

CONFIG = LinkConfig(network="fuzznet", prefix=network_prefix("fd00:f022::/48"))
INITIATOR_KEY = StaticKeyPair.from_private(bytes([1]) * 32)
RESPONDER_KEY = StaticKeyPair.from_private(bytes([2]) * 32)


def new_initiator() -> LinkConnection:
    link = LinkConnection.initiator(CONFIG, INITIATOR_KEY, RESPONDER_KEY.public)
    link.start(0.0)
    return link


def new_responder() -> LinkConnection:
    return LinkConnection.responder(
        CONFIG, [RESPONDER_KEY], authorize=lambda _k: True, replay_store=MemoryReplayStore()
    )


def established_pair() -> tuple[LinkConnection, LinkConnection]:
    initiator, responder = new_initiator(), new_responder()
    responder.receive_data(initiator.data_to_send(), 0.0)
    initiator.receive_data(responder.data_to_send(), 0.0)
    return initiator, responder


def seal(sender: LinkConnection, plaintext: bytes) -> bytes:
    """`sender`'s next transport message carrying an arbitrary plaintext (a hostile peer)."""
    sender._seal_pending()
    sender._seal(plaintext)
    return sender.data_to_send()
