"""Two LinkConnections wired back to back, with a fake clock and explicit byte delivery."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from altmesh.protocol import (
    LinkConfig,
    LinkConnection,
    MemoryReplayStore,
    StaticKeyPair,
    TimestampIssuer,
    network_prefix,
    node_address,
)
from altmesh.protocol import events as ev
from altmesh.protocol import records as R

PREFIX = network_prefix("fd12:3456:789a::/48")
NETWORK = "testnet"


def fixed_key(seed: int) -> StaticKeyPair:
    """A deterministic key pair (tests only)."""
    return StaticKeyPair.from_private(bytes([seed]) * 32)


def config(**overrides: object) -> LinkConfig:
    settings: dict[str, object] = {"network": NETWORK, "prefix": PREFIX}
    settings.update(overrides)
    return LinkConfig(**settings)  # type: ignore[arg-type]


@dataclass
class Pair:
    """An initiator and a responder; bytes move only when a test says so."""

    initiator: LinkConnection
    responder: LinkConnection
    initiator_key: StaticKeyPair
    responder_key: StaticKeyPair
    store: MemoryReplayStore
    now: float = 0.0
    events: dict[str, list[ev.Event]] = field(default_factory=lambda: {"i": [], "r": []})

    def side(self, name: str) -> LinkConnection:
        return self.initiator if name == "i" else self.responder

    def other(self, name: str) -> str:
        return "r" if name == "i" else "i"

    def transfer(self, source: str) -> int:
        """Move everything `source` has to send to the other side; returns bytes moved."""
        data = self.side(source).data_to_send(self.now)
        if data:
            self.side(self.other(source)).receive_data(data, self.now)
        self.collect()
        return len(data)

    def pump(self, rounds: int = 100) -> None:
        """Exchange bytes until both sides are quiet."""
        for _ in range(rounds):
            if self.transfer("i") + self.transfer("r") == 0:
                return
        raise AssertionError("links did not go quiet")

    def collect(self) -> None:
        for name in ("i", "r"):
            conn = self.side(name)
            while (event := conn.next_event()) is not None:
                self.events[name].append(event)

    def take(self, name: str) -> list[ev.Event]:
        self.collect()
        taken, self.events[name] = self.events[name], []
        return taken

    def tick(self, seconds: float) -> None:
        self.now += seconds
        for name in ("i", "r"):
            conn = self.side(name)
            deadline = conn.next_timer_deadline()
            if deadline is not None and deadline <= self.now:
                conn.handle_timer(self.now)
        self.collect()


def make_pair(
    *,
    initiator_config: LinkConfig | None = None,
    responder_config: LinkConfig | None = None,
    authorize: Callable[[bytes], bool] = lambda _key: True,
    store: MemoryReplayStore | None = None,
    establish: bool = True,
    wallclock: Callable[[], float] = lambda: 1_700_000_000.0,
) -> Pair:
    initiator_key, responder_key = fixed_key(1), fixed_key(2)
    store = store if store is not None else MemoryReplayStore()
    initiator = LinkConnection.initiator(
        initiator_config or config(),
        initiator_key,
        responder_key.public,
        timestamps=TimestampIssuer(wallclock),
    )
    responder = LinkConnection.responder(
        responder_config or config(),
        [responder_key],
        authorize=authorize,
        replay_store=store,
        timestamps=TimestampIssuer(wallclock),
    )
    pair = Pair(initiator, responder, initiator_key, responder_key, store)
    initiator.start(0.0)
    responder.start(0.0)
    if establish:
        pair.pump()
        assert initiator.established and responder.established
        pair.take("i")
        pair.take("r")
    return pair


def destination(pair: Pair) -> ipaddress.IPv6Address:
    return node_address(PREFIX, pair.responder_key.public)


def issuer(wall_time: float = 1_700_000_000.0) -> TimestampIssuer:
    """A node's timestamp issuer on a fixed wall clock."""
    return TimestampIssuer(lambda: wall_time)


def initiator(
    config: LinkConfig, local: StaticKeyPair, remote_public: bytes, now: float = 0.0
) -> LinkConnection:
    """A started link initiator of its own (a node of its own)."""
    link = LinkConnection.initiator(config, local, remote_public, timestamps=issuer())
    link.start(now)
    return link


def responder(
    config: LinkConfig,
    local_keys: list[StaticKeyPair],
    store: MemoryReplayStore | None = None,
) -> LinkConnection:
    """A link responder that accepts every key."""
    return LinkConnection.responder(
        config,
        local_keys,
        authorize=lambda _k: True,
        replay_store=store if store is not None else MemoryReplayStore(),
        timestamps=issuer(),
    )


def inject(conn: LinkConnection, plaintext: bytes, now: float = 0.0) -> bytes:
    """Seal an arbitrary plaintext with `conn`'s current send key: a misbehaving peer's message."""
    conn._sender.seal_queued(now)
    conn._sender.seal(plaintext, now)
    return conn.data_to_send(now)


def stream_bytes(events: list[ev.Event], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, ev.StreamData) and e.stream_id == stream_id
    )


def record(r: R.Record) -> bytes:
    return R.encode(r)
