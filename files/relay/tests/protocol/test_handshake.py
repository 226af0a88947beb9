"""Link handshakes: success, refusals, replays, malformed handshake messages."""

from __future__ import annotations

import pytest
from altmesh.protocol import (
    AddressMismatch,
    HandshakeDecryptError,
    HandshakeError,
    HandshakeTimeout,
    KeyRefused,
    LinkConnection,
    LinkNotEstablished,
    MemoryReplayStore,
    Oversize,
    ReplayedHandshake,
    StaticKeyPair,
    TruncatedHandshake,
    VersionMismatch,
    node_address,
)
from altmesh.protocol import constants as C
from altmesh.protocol import events as ev
from altmesh.protocol.handshake import (
    InitiatorHandshake,
    InitiatorPayload,
    ResponderHandshake,
    prologue,
)

from .helpers import PREFIX, config, fixed_key, initiator, issuer, make_pair, responder


def frame(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


def test_handshake_establishes_both_sides_and_proves_both_keys() -> None:
    pair = make_pair(establish=False)
    pair.pump()
    (done_i,) = pair.take("i")
    (done_r,) = pair.take("r")
    assert isinstance(done_i, ev.HandshakeComplete) and isinstance(done_r, ev.HandshakeComplete)
    assert done_i.remote_static == pair.responder_key.public
    assert done_r.remote_static == pair.initiator_key.public
    assert done_r.remote_address == node_address(PREFIX, pair.initiator_key.public)
    assert done_i.remote_address == node_address(PREFIX, pair.responder_key.public)
    assert pair.initiator.remote_address == done_i.remote_address
    assert pair.responder.remote_static == pair.initiator_key.public
    assert pair.initiator.stats.handshakes == pair.responder.stats.handshakes == 1


def test_handshake_messages_have_the_documented_sizes() -> None:
    pair = make_pair(establish=False)
    first = pair.initiator.data_to_send(0.0)
    assert len(first) == 2 + C.HANDSHAKE_INIT_LEN == 136
    pair.responder.receive_data(first, 0.0)
    second = pair.responder.data_to_send(0.0)
    assert len(second) == 2 + C.HANDSHAKE_RESPONSE_LEN == 76


def test_wrong_network_is_refused_with_a_handshake_decrypt_error() -> None:
    pair = make_pair(initiator_config=config(network="othernet"), establish=False)
    with pytest.raises(HandshakeDecryptError) as caught:
        pair.transfer("i")
    assert caught.value.kind == "handshake_decrypt_failed"
    assert not pair.responder.established


def test_handshake_for_an_unknown_responder_key_is_refused() -> None:
    pair = make_pair(establish=False)
    stranger = initiator(config(), fixed_key(3), fixed_key(4).public)
    with pytest.raises(HandshakeDecryptError):
        pair.responder.receive_data(stranger.data_to_send(0.0), 0.0)


def test_responder_refuses_a_key_the_authoriser_rejects() -> None:
    pair = make_pair(authorize=lambda key: key != fixed_key(1).public, establish=False)
    with pytest.raises(KeyRefused) as caught:
        pair.transfer("i")
    assert caught.value.kind == "key_refused"
    assert pair.responder.data_to_send(pair.now) == b""  # no reply leaks to a refused key


def test_responder_accepts_the_previous_key_during_rotation() -> None:
    old, new = fixed_key(2), fixed_key(5)
    client = initiator(config(), fixed_key(1), old.public)
    relay = responder(config(), [new, old])
    relay.receive_data(client.data_to_send(0.0), 0.0)
    client.receive_data(relay.data_to_send(0.0), 0.0)
    assert client.established and relay.established
    assert relay.local_static == old


def test_replayed_first_message_is_refused() -> None:
    pair = make_pair(establish=False)
    first = pair.initiator.data_to_send(0.0)
    pair.responder.receive_data(first, 0.0)
    assert pair.responder.established
    again = responder(config(), [pair.responder_key], pair.store)
    with pytest.raises(ReplayedHandshake) as caught:
        again.receive_data(first, 1.0)
    assert caught.value.kind == "replayed_handshake"


def test_older_timestamp_is_refused_and_newer_accepted() -> None:
    store = MemoryReplayStore()
    newer = make_pair(store=store, wallclock=lambda: 2_000_000_000.0, establish=False)
    older = make_pair(store=store, wallclock=lambda: 1_000_000_000.0, establish=False)
    # Build the older message by hand, as a node whose clock went back would send it.
    hand = InitiatorHandshake(
        prologue(C.LINK_PROLOGUE_LABEL, "testnet"), fixed_key(1), fixed_key(2).public
    )
    payload = InitiatorPayload(
        0,
        bytes.fromhex("400000000000000a00000000"),  # 1970: older than anything accepted
        node_address(PREFIX, fixed_key(1).public),
        C.DEFAULT_STREAM_WINDOW,
        16,
    )
    newer.pump()
    assert newer.responder.established
    with pytest.raises(ReplayedHandshake):
        older.responder.receive_data(frame(hand.write_init(payload.encode())), 0.0)
    fresh = make_pair(store=store, wallclock=lambda: 2_000_000_001.0)  # a later one is fine
    assert fresh.responder.established


def test_replay_protection_survives_through_the_store() -> None:
    """A new responder (a restarted relay) with the same store still refuses the old message."""
    store = MemoryReplayStore()
    pair = make_pair(store=store, establish=False)
    first = pair.initiator.data_to_send(0.0)
    pair.responder.receive_data(first, 0.0)
    recorded = store.last_timestamp(pair.initiator_key.public)
    assert recorded is not None and len(recorded) == 12
    restarted = responder(config(), [pair.responder_key], store)
    with pytest.raises(ReplayedHandshake):
        restarted.receive_data(first, 0.0)
    assert store.last_timestamp(pair.initiator_key.public) == recorded


def test_refused_handshake_does_not_advance_the_stored_timestamp() -> None:
    store = MemoryReplayStore()
    pair = make_pair(store=store, authorize=lambda _k: False, establish=False)
    with pytest.raises(KeyRefused):
        pair.transfer("i")
    assert store.last_timestamp(pair.initiator_key.public) is None


def _handcrafted_init(payload: InitiatorPayload, *, version_byte: int | None = None) -> bytes:
    hand = InitiatorHandshake(
        prologue(C.LINK_PROLOGUE_LABEL, "testnet"), fixed_key(1), fixed_key(2).public
    )
    encoded = payload.encode()
    if version_byte is not None:
        encoded = bytes([version_byte]) + encoded[1:]
    return frame(hand.write_init(encoded))


def _responder() -> LinkConnection:
    return responder(config(), [fixed_key(2)])


def _payload(**overrides: object) -> InitiatorPayload:
    values: dict[str, object] = {
        "flags": 0,
        "timestamp": issuer().next(),
        "address": node_address(PREFIX, fixed_key(1).public),
        "stream_window": C.DEFAULT_STREAM_WINDOW,
        "max_streams": 16,
    }
    values.update(overrides)
    return InitiatorPayload(**values)  # type: ignore[arg-type]


def test_claiming_another_nodes_address_is_refused() -> None:
    victim = node_address(PREFIX, fixed_key(9).public)
    with pytest.raises(AddressMismatch) as caught:
        _responder().receive_data(_handcrafted_init(_payload(address=victim)), 0.0)
    assert caught.value.kind == "address_mismatch"


def test_payload_with_another_protocol_version_is_refused() -> None:
    with pytest.raises(VersionMismatch):
        _responder().receive_data(_handcrafted_init(_payload(), version_byte=2), 0.0)


def test_rekey_flag_in_a_first_handshake_is_refused() -> None:
    with pytest.raises(HandshakeError):
        _responder().receive_data(_handcrafted_init(_payload(flags=1)), 0.0)


def test_a_probe_handshake_establishes_and_both_sides_know_the_link_only_measures() -> None:
    initiator_conn = LinkConnection.initiator(
        config(), fixed_key(1), fixed_key(2).public, timestamps=issuer(), probe=True
    )
    responder_conn = _responder()
    initiator_conn.start(0.0)
    responder_conn.receive_data(initiator_conn.data_to_send(0.0), 0.0)
    initiator_conn.receive_data(responder_conn.data_to_send(0.0), 0.0)
    assert initiator_conn.established and responder_conn.established
    assert initiator_conn.probe and responder_conn.probe
    (done,) = [e for e in iter(responder_conn.next_event, None)]
    assert isinstance(done, ev.HandshakeComplete) and done.probe
    assert not make_pair().responder.probe  # an ordinary link is none


def test_a_probe_flag_beside_the_rekey_flag_or_an_unknown_flag_is_refused() -> None:
    for flags in (C.HANDSHAKE_FLAG_PROBE | C.HANDSHAKE_FLAG_REKEY, 0x04, 0x80):
        with pytest.raises(HandshakeError):
            _responder().receive_data(_handcrafted_init(_payload(flags=flags)), 0.0)


def test_responder_with_a_claimed_address_that_its_key_does_not_give_is_refused() -> None:
    """The responder proves its key by IK; its claimed address is checked against it."""
    client = initiator(config(), fixed_key(1), fixed_key(2).public)
    message1 = client.data_to_send(0.0)[2:]
    responder = ResponderHandshake(prologue(C.LINK_PROLOGUE_LABEL, "testnet"), [fixed_key(2)])
    responder.read_init(message1)
    from altmesh.protocol.handshake import ResponderPayload

    lie = ResponderPayload(0, node_address(PREFIX, fixed_key(9).public), 1024, 16)
    message2, _keys = responder.write_response(lie.encode())
    with pytest.raises(AddressMismatch):
        client.receive_data(frame(message2), 0.0)


def test_truncated_first_message_is_refused_at_its_length() -> None:
    responder = _responder()
    with pytest.raises(TruncatedHandshake) as caught:
        responder.receive_data(frame(b"\x00" * 40), 0.0)
    assert caught.value.kind == "handshake_truncated"


def test_length_prefix_alone_of_a_short_message_is_refused_without_waiting() -> None:
    with pytest.raises(TruncatedHandshake):
        _responder().receive_data((10).to_bytes(2, "big"), 0.0)


def test_oversize_first_message_is_refused() -> None:
    with pytest.raises(Oversize) as caught:
        _responder().receive_data((C.MAX_MESSAGE_LEN).to_bytes(2, "big"), 0.0)
    assert caught.value.kind == "oversize"


def test_corrupted_response_is_a_handshake_decrypt_error() -> None:
    pair = make_pair(establish=False)
    pair.transfer("i")
    reply = bytearray(pair.responder.data_to_send(0.0))
    reply[-1] ^= 0x01
    with pytest.raises(HandshakeDecryptError):
        pair.initiator.receive_data(bytes(reply), 0.0)


def test_low_order_ephemeral_key_is_a_typed_error() -> None:
    message = bytes(32) + bytes(C.HANDSHAKE_INIT_LEN - 32)
    with pytest.raises(HandshakeDecryptError):
        _responder().receive_data(frame(message), 0.0)


def test_silent_peer_times_out() -> None:
    pair = make_pair(establish=False)
    deadline = pair.responder.next_timer_deadline()
    assert deadline == C.HANDSHAKE_TIMEOUT
    with pytest.raises(HandshakeTimeout):
        pair.responder.handle_timer(deadline)
    with pytest.raises(HandshakeTimeout):
        pair.initiator.handle_timer(deadline)


def test_a_failed_link_stays_dead() -> None:
    pair = make_pair(establish=False)
    with pytest.raises(TruncatedHandshake):
        pair.responder.receive_data(frame(b"\x01" * 10), 0.0)
    with pytest.raises(LinkNotEstablished):  # feeding a dead link is the caller's mistake
        pair.responder.receive_data(b"\x00", 0.0)
    assert not pair.responder.established


def test_key_pair_from_private_derives_the_public_key() -> None:
    pair = StaticKeyPair.generate()
    assert StaticKeyPair.from_private(pair.private) == pair
    assert "private" not in repr(pair) or pair.private.hex() not in repr(pair)
