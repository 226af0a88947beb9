"""Shared pieces of the fuzz targets: fixed keys, fresh links and sessions, a hostile sealer."""

from __future__ import annotations

from altmesh.protocol import (
    ControlLimits,
    EndToEndSession,
    LinkConfig,
    LinkConnection,
    MemoryReplayStore,
    ReorderWindow,
    SecurityNotice,
    StaticKeyPair,
    TimestampIssuer,
    network_prefix,
)

CONFIG = LinkConfig(network="fuzznet", prefix=network_prefix("fd00:f022::/48"))
INITIATOR_KEY = StaticKeyPair.from_private(bytes([1]) * 32)
RESPONDER_KEY = StaticKeyPair.from_private(bytes([2]) * 32)


NETWORK = "fuzznet"
WALL_TIME = 1_700_000_000.0


def timestamps() -> TimestampIssuer:
    """A fresh node's timestamp issuer on a fixed wall clock."""
    return TimestampIssuer(lambda: WALL_TIME)


def new_initiator() -> LinkConnection:
    link = LinkConnection.initiator(
        CONFIG, INITIATOR_KEY, RESPONDER_KEY.public, timestamps=timestamps()
    )
    link.start(0.0)
    return link


def new_responder() -> LinkConnection:
    return LinkConnection.responder(
        CONFIG,
        [RESPONDER_KEY],
        authorize=lambda _k: True,
        replay_store=MemoryReplayStore(),
        timestamps=timestamps(),
    )


def new_e2e_initiator() -> EndToEndSession:
    return EndToEndSession.initiator(
        NETWORK, INITIATOR_KEY, RESPONDER_KEY.public, timestamps=timestamps()
    )


def new_e2e_responder() -> EndToEndSession:
    return EndToEndSession.responder(
        NETWORK,
        [RESPONDER_KEY],
        authorize=lambda _k: True,
        replay_window=ReorderWindow(MemoryReplayStore()),
    )


def established_pair() -> tuple[LinkConnection, LinkConnection]:
    initiator, responder = new_initiator(), new_responder()
    responder.receive_data(initiator.data_to_send(0.0), 0.0)
    initiator.receive_data(responder.data_to_send(0.0), 0.0)
    return initiator, responder


def seal(sender: LinkConnection, plaintext: bytes, now: float) -> bytes:
    """`sender`'s next transport message carrying an arbitrary plaintext (a hostile peer)."""
    sender._sender.seal_queued(now)
    sender._sender.seal(plaintext, now)
    return sender.data_to_send(now)


class LinkOracle:
    """What must hold after every message a link receives, whatever the peer sent (see
    fuzz_link.py): bounded events per kind, output and memory, and a consistent stream table."""

    def __init__(self, link: LinkConnection, limits: ControlLimits | None = None) -> None:
        self.link = link
        self.limits = limits or link.config.control_limits
        self.started: float | None = None
        self.notices: dict[str, int] = {}
        self.writes = 0

    def after(self, message: bytes, records_before: int, now: float) -> None:
        link = self.link
        if self.started is None:
            self.started = now
        elapsed = now - self.started
        records = link.stats.records_in - records_before
        events = 0
        while (event := link.next_event()) is not None:
            events += 1
            if isinstance(event, SecurityNotice):
                self.notices[event.kind] = self.notices.get(event.kind, 0) + 1
        assert events <= 2 * records + 1, f"{events} events for {records} records"
        # A hostile peer must not turn each record into a notice (and a log line): notices of
        # each kind are bounded by the link's limits, not by what the peer sends.
        pongs = self.limits.unsolicited_pongs
        allowed_pongs = pongs.burst + pongs.rate * elapsed
        assert self.notices.get("unsolicited_pong", 0) <= allowed_pongs, self.notices
        assert self.notices.get("ping_flood", 0) <= self.writes + 1, self.notices
        assert self.notices.get("flow_control", 0) <= link.stats.streams_total, self.notices
        answer = link.data_to_send(now)
        self.writes += 1
        assert len(answer) <= 2 * len(message) + 4096, f"{len(answer)} bytes for {len(message)}"
        link.check_invariants()
        assert link.retained_bytes <= 2 + 65535, link.retained_bytes
