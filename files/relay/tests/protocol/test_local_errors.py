"""The application's mistakes raise LocalProtocolErrors, never ProtocolErrors: a ProtocolError
always means the peer sent something wrong (what security events and the fuzz targets rely on)."""

from __future__ import annotations

import inspect
import ipaddress
from collections.abc import Callable

import pytest
from altmesh import protocol
from altmesh.protocol import (
    InvalidArgument,
    LinkNotEstablished,
    LocalProtocolError,
    LocalStateError,
    MemoryReplayStore,
    NonceSpaceExhausted,
    ProtocolError,
    StaticKeyPair,
    StreamLimitReached,
    decode_key,
    encode_key,
    network_prefix,
    node_address,
    parse_tai64n,
)
from altmesh.protocol import constants as C
from altmesh.protocol import errors as E
from altmesh.protocol import records as R
from altmesh.protocol.framing import length_prefix
from altmesh.protocol.handshake import ResponderHandshake, prologue
from altmesh.protocol.transport import TransportCipher
from hypothesis import given, settings
from hypothesis import strategies as st

from .helpers import PREFIX, Pair, config, destination, fixed_key, make_pair
from .test_e2e import established_sessions, sessions


def test_the_two_families_never_mix() -> None:
    classes = [c for _, c in inspect.getmembers(E, inspect.isclass) if issubclass(c, Exception)]
    local = [c for c in classes if issubclass(c, LocalProtocolError)]
    peer = [c for c in classes if issubclass(c, ProtocolError)]
    assert set(local) | set(peer) == set(classes)
    assert not set(local) & set(peer)
    assert len({c.kind for c in local}) == len(local)  # every kind names one fault
    assert len({c.kind for c in peer}) == len(peer)
    assert not {c.kind for c in local} & {c.kind for c in peer}


def test_every_error_class_is_exported() -> None:
    for name, cls in inspect.getmembers(E, inspect.isclass):
        if issubclass(cls, Exception):
            assert getattr(protocol, name) is cls


def _closed_pair() -> Pair:
    pair = make_pair()
    pair.initiator.close("done", 0.0)
    return pair


def _ended_stream(pair: Pair) -> int:
    stream = pair.initiator.open_stream(destination(pair), 1)
    pair.initiator.end_stream(stream)
    return stream


def _exhausted_cipher() -> TransportCipher:
    cipher = TransportCipher(bytes(32), 0)
    cipher.counter = C.MAX_NONCE
    return cipher


MISUSES: dict[str, tuple[type[LocalProtocolError], Callable[[], object]]] = {
    "data on a stream never opened": (
        LocalStateError,
        lambda: make_pair().initiator.send_stream_data(99, b"x"),
    ),
    "data after our own end_stream": (
        LocalStateError,
        lambda: (lambda p: p.initiator.send_stream_data(_ended_stream(p), b"x"))(make_pair()),
    ),
    "end_stream on a stream never opened": (
        LocalStateError,
        lambda: make_pair().initiator.end_stream(7),
    ),
    "reset of a stream never opened": (
        LocalStateError,
        lambda: make_pair().initiator.reset_stream(7, 1, "no"),
    ),
    "open before the handshake": (
        LinkNotEstablished,
        lambda: make_pair(establish=False).initiator.open_stream(ipaddress.IPv6Address(1), 1),
    ),
    "open after close": (
        LinkNotEstablished,
        lambda: _closed_pair().initiator.open_stream(ipaddress.IPv6Address(1), 1),
    ),
    "send after close": (
        LinkNotEstablished,
        lambda: _closed_pair().initiator.send_stream_data(1, b"x"),
    ),
    "ping before the handshake": (
        LinkNotEstablished,
        lambda: make_pair(establish=False).responder.ping(0.0),
    ),
    "rekey after close": (LinkNotEstablished, lambda: _closed_pair().initiator.rekey(0.0)),
    "route info after close": (
        LinkNotEstablished,
        lambda: _closed_pair().initiator.send_route_info(b"r"),
    ),
    "more streams than the peer allows": (
        StreamLimitReached,
        lambda: [
            (p := make_pair(responder_config=config(max_streams=1))),
            p.initiator.open_stream(destination(p), 1),
            p.initiator.open_stream(destination(p), 1),
        ],
    ),
    "port outside 0..65535": (
        InvalidArgument,
        lambda: (lambda p: p.initiator.open_stream(destination(p), 65536))(make_pair()),
    ),
    "reset code outside 0..65535": (
        InvalidArgument,
        lambda: make_pair().initiator.reset_stream(1, 0x10000, "x"),
    ),
    "negative acknowledgement": (
        InvalidArgument,
        lambda: make_pair().initiator.acknowledge(1, -1),
    ),
    "route info larger than a message": (
        InvalidArgument,
        lambda: make_pair().initiator.send_route_info(b"r" * (C.MAX_ROUTE_INFO_LEN + 1)),
    ),
    "encoding something that is not a record": (
        InvalidArgument,
        lambda: R.encode("not a record"),  # type: ignore[arg-type]
    ),
    "remote key of the wrong length": (
        InvalidArgument,
        lambda: protocol.LinkConnection.initiator(
            config(), fixed_key(1), b"short", timestamps=protocol.TimestampIssuer(lambda: 0.0)
        ),
    ),
    "a responder without keys": (
        InvalidArgument,
        lambda: protocol.LinkConnection.responder(
            config(),
            [],
            authorize=lambda _k: True,
            replay_store=MemoryReplayStore(),
            timestamps=protocol.TimestampIssuer(lambda: 0.0),
        ),
    ),
    "inconsistent link settings": (InvalidArgument, lambda: config(keepalive_interval=0)),
    "a network name too long": (InvalidArgument, lambda: prologue(b"x", "n" * 300)),
    "a prefix that is not a ULA /48": (InvalidArgument, lambda: network_prefix("2001:db8::/48")),
    "an address from a /64": (
        InvalidArgument,
        lambda: node_address(ipaddress.IPv6Network("fd00::/64"), fixed_key(1).public),
    ),
    "a private key of the wrong length": (
        InvalidArgument,
        lambda: StaticKeyPair.from_private(b"123"),
    ),
    "a key text that is not base64": (InvalidArgument, lambda: decode_key("not base64!")),
    "encoding a key of the wrong length": (InvalidArgument, lambda: encode_key(b"123")),
    "a label that is not TAI64N": (InvalidArgument, lambda: parse_tai64n(b"123")),
    "a frame longer than 65535": (InvalidArgument, lambda: length_prefix(70_000)),
    "write_response before message 1": (
        LocalStateError,
        lambda: ResponderHandshake(prologue(b"x", "n"), [fixed_key(1)]).write_response(b""),
    ),
    "encrypt before the end-to-end handshake": (
        LocalStateError,
        lambda: sessions()[0].encrypt(b"x"),
    ),
    "encrypt after the end-to-end CLOSE": (
        LocalStateError,
        lambda: (lambda c: (c.close(), c.encrypt(b"x")))(established_sessions()[0]),
    ),
    "start twice": (LocalStateError, lambda: (lambda c: (c.start(), c.start()))(sessions()[0])),
    "start on the service side": (LocalStateError, lambda: sessions()[1].start()),
    "receive on an initiator before start": (
        LocalStateError,
        lambda: sessions()[0].receive(b"\x00\x32"),
    ),
    "a key that sealed 2^64 - 1 messages": (
        NonceSpaceExhausted,
        lambda: _exhausted_cipher().encrypt(b"x"),
    ),
}


@pytest.mark.parametrize("misuse", sorted(MISUSES))
def test_caller_misuse_raises_the_local_error_class_and_never_a_protocol_error(
    misuse: str,
) -> None:
    expected, call = MISUSES[misuse]
    with pytest.raises(LocalProtocolError) as raised:
        call()
    assert isinstance(raised.value, expected), raised.value
    assert not isinstance(raised.value, ProtocolError)
    assert raised.value.message  # says what was wrong


def test_a_dead_end_to_end_session_refuses_further_use_locally() -> None:
    client, service = established_sessions()
    wire = bytearray(client.encrypt(b"payload"))
    wire[-1] ^= 1
    with pytest.raises(ProtocolError):  # the peer's fault: a forged message
        service.receive(bytes(wire))
    for later in (lambda: service.receive(b""), service.receive_end, lambda: service.encrypt(b"")):
        with pytest.raises(LocalStateError):
            later()


def test_feeding_a_failed_link_is_a_local_mistake() -> None:
    pair = make_pair()
    with pytest.raises(ProtocolError):
        pair.responder.receive_data(b"\x00\x01\x00", 0.0)  # shorter than a MAC: the peer's fault
    for later in (
        lambda: pair.responder.receive_data(b"", 0.0),
        lambda: pair.responder.handle_timer(1.0),
    ):
        with pytest.raises(LinkNotEstablished):
            later()
    assert pair.responder.next_timer_deadline() is None


def test_clean_up_calls_on_a_link_that_is_gone_do_nothing() -> None:
    pair = _closed_pair()
    pair.initiator.acknowledge(1, 10)
    pair.initiator.reset_stream(1, 1, "late")
    pair.initiator.close("again", 1.0)
    assert pair.initiator.data_to_send(1.0) != b""  # only the first CLOSE, sealed at close()
    assert pair.initiator.data_to_send(1.0) == b""


CALLS = st.lists(
    st.tuples(
        st.sampled_from(
            ["open", "send", "end", "reset", "ack", "ping", "route", "rekey", "close", "pump"]
        ),
        st.sampled_from([-1, 0, 1, 2, 3, 5, 7, 2**32, 2**32 + 1]),  # stream ids, ports, codes
        st.sampled_from([-1, 0, 1, 1000, 70_000, C.MAX_ROUTE_INFO_LEN + 1]),  # sizes
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(CALLS)
def test_any_sequence_of_api_calls_raises_only_local_errors(
    calls: list[tuple[str, int, int]],
) -> None:
    """Whatever an application calls, with whatever arguments, in whatever order: it gets
    LocalProtocolErrors for its mistakes; honest traffic between the two ends never fails."""
    pair = make_pair()
    link = pair.initiator
    address = node_address(PREFIX, pair.responder_key.public)
    for name, number, size in calls:
        try:
            if name == "open":
                link.open_stream(address, number)
            elif name == "send":
                link.send_stream_data(number, b"d" * max(size, 0))
            elif name == "end":
                link.end_stream(number)
            elif name == "reset":
                link.reset_stream(number, number, "reason")
            elif name == "ack":
                link.acknowledge(number, size)
            elif name == "ping":
                link.ping(pair.now)
            elif name == "route":
                link.send_route_info(b"r" * max(size, 0))
            elif name == "rekey":
                link.rekey(pair.now)
            elif name == "close":
                link.close("bye", pair.now)
            else:
                pair.pump()
        except LocalProtocolError:
            pass
    pair.pump()  # a ProtocolError here would be a fault of our own side: the test fails
