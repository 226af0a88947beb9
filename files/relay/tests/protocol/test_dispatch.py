"""Received records reach their handlers through one table that covers every record type."""

from __future__ import annotations

import inspect
import typing

from altmesh.protocol import events as ev
from altmesh.protocol import records as R
from altmesh.protocol.link import RECORD_HANDLERS, LinkConnection

from .helpers import destination, inject, make_pair


def test_the_dispatch_table_covers_every_record_type_exactly() -> None:
    assert set(RECORD_HANDLERS) == set(typing.get_args(R.Record))


def test_each_handler_is_a_method_of_the_link_named_for_its_record() -> None:
    for record_type, handler in RECORD_HANDLERS.items():
        assert getattr(LinkConnection, handler.__name__) is handler
        annotation = inspect.signature(handler).parameters["record"].annotation
        assert annotation == f"R.{record_type.__name__}", (record_type, annotation)


def test_a_message_of_many_records_is_dispatched_in_order() -> None:
    pair = make_pair()
    stream = 1
    plaintext = b"".join(
        R.encode(r)
        for r in (
            R.OpenRecord(stream, destination(pair), 7),
            R.DataRecord(stream, b"abc"),
            R.RouteInfoRecord(b"route"),
            R.FinRecord(stream),
            R.PingRecord(b"12345678"),
        )
    )
    pair.responder.receive_data(inject(pair.initiator, plaintext), 0.0)
    assert pair.take("r") == [
        ev.StreamOpened(stream, destination(pair), 7),
        ev.StreamData(stream, b"abc"),
        ev.RouteInfoReceived(b"route"),
        ev.StreamEnded(stream),
    ]
    pair.transfer("r")  # the PING was answered
    assert [type(e) for e in pair.take("i")] == [ev.SecurityNotice]  # a PONG for no PING of ours


def test_records_after_close_in_the_same_message_are_not_dispatched() -> None:
    pair = make_pair()
    plaintext = R.encode(R.CloseRecord("bye")) + R.encode(R.RouteInfoRecord(b"late"))
    pair.responder.receive_data(inject(pair.initiator, plaintext), 0.0)
    assert pair.take("r") == [ev.LinkClosed("bye")]
