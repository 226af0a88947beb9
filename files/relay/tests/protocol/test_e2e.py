"""End-to-end sessions inside a stream: relays see only ciphertext."""

from __future__ import annotations

import pytest
from altmesh.protocol import (
    DecryptError,
    EndToEndSession,
    EndToEndTruncated,
    HandshakeDecryptError,
    KeyRefused,
    LocalStateError,
    MemoryReplayStore,
    Oversize,
    ReorderWindow,
    ReplayedHandshake,
    StreamStateError,
)
from altmesh.protocol import constants as C
from altmesh.protocol import events as ev
from altmesh.protocol.handshake import InitiatorHandshake, prologue

from .helpers import destination, fixed_key, issuer, make_pair, stream_bytes

CLIENT_TIMESTAMPS = issuer()  # the client node's one issuer: every session it starts uses it


def sessions(
    window: ReorderWindow | None = None, network: str = "testnet"
) -> tuple[EndToEndSession, EndToEndSession]:
    """A client session and a service session; services sharing `window` are one node."""
    client = EndToEndSession.initiator(
        network, fixed_key(11), fixed_key(12).public, timestamps=CLIENT_TIMESTAMPS
    )
    service = EndToEndSession.responder(
        "testnet",
        [fixed_key(12)],
        authorize=lambda _k: True,
        replay_window=window if window is not None else ReorderWindow(MemoryReplayStore()),
    )
    return client, service


def test_end_to_end_session_through_a_relay_link_carries_only_ciphertext() -> None:
    client, service = sessions()
    pair = make_pair()  # the client's link to a relay: the relay sees stream bytes
    stream = pair.initiator.open_stream(destination(pair), 80)
    secret = b"GET /secret-page HTTP/1.1\r\n" * 1000
    pair.initiator.send_stream_data(stream, client.start())
    pair.pump()
    seen_by_relay = bytearray()
    for event in pair.take("r"):
        if isinstance(event, ev.StreamData):
            seen_by_relay += event.data
    assert service.receive(bytes(seen_by_relay)) == []
    assert service.established and service.remote_static == fixed_key(11).public
    assert client.receive(service.pending_output()) == []
    assert client.established and client.remote_static == fixed_key(12).public
    ciphertext = client.encrypt(secret)
    sent = pair.initiator.send_stream_data(stream, ciphertext)
    assert sent == len(ciphertext)
    pair.pump()
    relayed = b"".join(e.data for e in pair.take("r") if isinstance(e, ev.StreamData))
    assert b"secret-page" not in relayed
    assert b"".join(service.receive(relayed)) == secret
    assert client.receive(service.encrypt(b"HTTP/1.1 200 OK")) == [b"HTTP/1.1 200 OK"]


def test_large_plaintext_is_split_into_noise_sized_messages() -> None:
    client, service = sessions()
    service.receive(client.start())
    client.receive(service.pending_output())
    data = bytes(200_000)
    wire = client.encrypt(data)
    assert len(wire) == len(data) + 4 * (2 + C.TAG_LEN)
    chunks = service.receive(wire)
    assert all(len(c) <= C.MAX_PLAINTEXT_LEN for c in chunks) and b"".join(chunks) == data


def test_service_refuses_a_client_key_it_does_not_authorize() -> None:
    client, _ = sessions()
    service = EndToEndSession.responder(
        "testnet",
        [fixed_key(12)],
        authorize=lambda _k: False,
        replay_window=ReorderWindow(MemoryReplayStore()),
    )
    with pytest.raises(KeyRefused):
        service.receive(client.start())
    assert service.pending_output() == b""


def test_wrong_service_key_or_network_fails_the_handshake() -> None:
    impostor = EndToEndSession.responder(
        "testnet",
        [fixed_key(13)],
        authorize=lambda _k: True,
        replay_window=ReorderWindow(MemoryReplayStore()),
    )
    client, _ = sessions()
    with pytest.raises(HandshakeDecryptError):
        impostor.receive(client.start())
    other_network, service = sessions(network="othernet")
    with pytest.raises(HandshakeDecryptError):
        service.receive(other_network.start())


def test_link_handshake_cannot_be_used_as_an_end_to_end_one() -> None:
    pair = make_pair(establish=False)
    link_message = pair.initiator.data_to_send(pair.now)
    _, service = sessions()
    with pytest.raises(Oversize):
        service.receive(link_message)
    # Even at the end-to-end size, the link prologue does not authenticate here.
    crafted = InitiatorHandshake(
        prologue(C.LINK_PROLOGUE_LABEL, "testnet"), fixed_key(11), fixed_key(12).public
    ).write_init(bytes(C.E2E_INIT_PAYLOAD_LEN))
    _, service = sessions()
    with pytest.raises(HandshakeDecryptError):
        service.receive(len(crafted).to_bytes(2, "big") + crafted)


def test_replayed_end_to_end_handshake_is_refused() -> None:
    window = ReorderWindow(MemoryReplayStore())
    client, service = sessions(window)
    first = client.start()
    service.receive(first)
    _, again = sessions(window)
    with pytest.raises(ReplayedHandshake):
        again.receive(first)


def test_replayed_end_to_end_handshake_is_refused_after_a_restart() -> None:
    """A restarted service (a new window over the same persistent store) still refuses it."""
    store = MemoryReplayStore()
    client, service = sessions(ReorderWindow(store))
    first = client.start()
    service.receive(first)
    _, restarted = sessions(ReorderWindow(store))
    with pytest.raises(ReplayedHandshake):
        restarted.receive(first)


def test_slightly_reordered_end_to_end_handshakes_are_accepted_once() -> None:
    window = ReorderWindow(MemoryReplayStore())
    early, late = sessions(window)[0], sessions(window)[0]
    first, second = early.start(), late.start()
    _, service_a = sessions(window)
    _, service_b = sessions(window)
    service_a.receive(second)  # arrives first
    service_b.receive(first)  # older, but within the reorder window: fine
    _, service_c = sessions(window)
    with pytest.raises(ReplayedHandshake):
        service_c.receive(first)


def test_tampered_end_to_end_ciphertext_is_a_decrypt_error() -> None:
    client, service = sessions()
    service.receive(client.start())
    client.receive(service.pending_output())
    wire = bytearray(client.encrypt(b"payload"))
    wire[-1] ^= 1
    with pytest.raises(DecryptError):
        service.receive(bytes(wire))


def test_encrypt_before_the_handshake_is_refused() -> None:
    client, _ = sessions()
    with pytest.raises(LocalStateError):
        client.encrypt(b"too early")


def test_a_failed_session_stays_dead() -> None:
    client, service = sessions()
    service.receive(client.start())
    client.receive(service.pending_output())
    wire = bytearray(client.encrypt(b"payload"))
    wire[-1] ^= 1
    with pytest.raises(DecryptError):
        service.receive(bytes(wire))
    with pytest.raises(LocalStateError):
        service.receive(client.encrypt(b"more"))
    with pytest.raises(LocalStateError):
        service.encrypt(b"reply")
    assert not service.established


def established_sessions() -> tuple[EndToEndSession, EndToEndSession]:
    client, service = sessions()
    service.receive(client.start())
    client.receive(service.pending_output())
    assert client.established and service.established
    return client, service


def relay_stream(client_bytes: bytes, keep: int | None) -> tuple[list[ev.Event], list[ev.Event]]:
    """Carry `client_bytes` on a stream client -> relay -> service over two real links, then FIN.
    The relay forwards the first `keep` bytes only (None: all), as a relay cutting the stream
    short would; it then ends the stream towards the service with a FIN of its own."""
    client_link = make_pair()  # client (initiator) -> relay (responder)
    service_link = make_pair()  # relay (initiator) -> service (responder)
    inbound = client_link.initiator.open_stream(destination(client_link), 80)
    assert client_link.initiator.send_stream_data(inbound, client_bytes) == len(client_bytes)
    client_link.initiator.end_stream(inbound)
    client_link.pump()
    at_relay = client_link.take("r")
    received = stream_bytes(at_relay, inbound)
    assert received == client_bytes
    assert any(isinstance(e, ev.StreamEnded) for e in at_relay)
    outbound = service_link.initiator.open_stream(destination(service_link), 80)
    forwarded = received if keep is None else received[:keep]
    service_link.initiator.send_stream_data(outbound, forwarded)
    service_link.initiator.end_stream(outbound)  # a FIN the relay is free to forge
    service_link.pump()
    return at_relay, service_link.take("r")


def service_side(events: list[ev.Event], service: EndToEndSession) -> bytes:
    """What the service application does with its stream's events (as altmesh.net.stream)."""
    plaintext = b""
    for event in events:
        if isinstance(event, ev.StreamData):
            plaintext += b"".join(service.receive(event.data))
        elif isinstance(event, ev.StreamEnded):
            service.receive_end()
    return plaintext


def test_stream_end_is_authenticated_end_to_end_through_an_honest_relay() -> None:
    client, service = established_sessions()
    request = b"upload " * 20_000
    sent = client.encrypt(request) + client.close()
    _, at_service = relay_stream(sent, keep=None)
    assert service_side(at_service, service) == request
    assert service.peer_closed


@pytest.mark.parametrize("cut", ["whole_messages", "inside_a_message", "only_the_close"])
def test_relay_cutting_a_stream_short_with_its_own_fin_is_detected(cut: str) -> None:
    client, service = established_sessions()
    head, tail = b"A" * 70_000, b"B" * 70_000  # several e2e messages each
    first = client.encrypt(head)
    sent = first + client.encrypt(tail) + client.close()
    keep = {
        "whole_messages": len(first),
        "inside_a_message": len(first) + 1000,
        "only_the_close": len(sent) - (C.LENGTH_PREFIX_LEN + C.TAG_LEN),
    }[cut]
    _, at_service = relay_stream(sent, keep=keep)
    with pytest.raises(EndToEndTruncated) as raised:
        service_side(at_service, service)
    assert raised.value.kind == "e2e_truncated"
    assert not service.peer_closed
    with pytest.raises(LocalStateError):  # dead, like any failed session
        service.receive(b"")


def test_fin_before_the_end_to_end_session_is_up_is_a_truncation() -> None:
    client, service = sessions()
    service.receive(client.start()[:50])
    with pytest.raises(EndToEndTruncated):
        service.receive_end()


def test_nothing_may_follow_close() -> None:
    client, service = established_sessions()
    closing = client.close()
    with pytest.raises(LocalStateError):
        client.encrypt(b"more")
    with pytest.raises(LocalStateError):
        client.close()
    assert service.receive(closing) == []
    assert service.peer_closed
    # A message sealed after CLOSE (a peer that ignores the rule) is refused.
    forged_client, forged_service = established_sessions()
    closing = forged_client.close()
    assert forged_client._send is not None
    sealed = forged_client._send.encrypt(b"x")
    late = closing + len(sealed).to_bytes(2, "big") + sealed
    with pytest.raises(StreamStateError):
        forged_service.receive(late)
