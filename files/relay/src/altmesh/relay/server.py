"""The relay daemon: its lifetime (start, signals, SIGHUP reload, SIGTERM drain) and the
dispatch of link events to the concept each belongs to.

A node attached to the relay (`attached.py`) is reachable at the address its key gives. Other
relays are mesh peers (`mesh.py`: one link each, probed); the routing engine (`routing.py`)
learns over their links where every other address is attached. A stream goes to the node's link
or to the next relay (`next_hop.py`), and its two halves are coupled by `forwarding.py`. Who may
connect is decided in `admission.py` (and relay peers' keys are always allowed); what links do
wrong becomes security events in `security.py`.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import signal
import time
from typing import Any, BinaryIO, assert_never

from altmesh import events as ev
from altmesh.client.dnssec import AltResolver, parse_trust_anchors
from altmesh.config import Config, ConfigError, load_config
from altmesh.keyfile import KeyFileError, decode_public_key, encode_public_key, read_private_key
from altmesh.metrics import NodeMetrics
from altmesh.net.link import LinkTransport, ReadBuffer, flush_kicked_after
from altmesh.protocol import (
    Event,
    HandshakeComplete,
    LinkClosed,
    LinkConnection,
    LinkNotEstablished,
    PathHop,
    PongReceived,
    ProtocolError,
    Rekeyed,
    RouteInfoReceived,
    SecurityNotice,
    StaticKeyPair,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamPath,
    StreamReset,
    StreamWritable,
    TimestampIssuer,
    encode_stream_path,
    route_info_type,
)
from altmesh.protocol.constants import RouteInfoType
from altmesh.relay.admission import Admission, load_policy
from altmesh.relay.attached import AttachedNodes
from altmesh.relay.discovery import RelayDiscovery
from altmesh.relay.forwarding import Forwarder
from altmesh.relay.link_state import RelayLink, RelayLinkState
from altmesh.relay.mesh import MeshLinks, MeshLinkStatus, MeshTimings, PeerSpec
from altmesh.relay.next_hop import Target, choose_target
from altmesh.relay.reporting import Reporter
from altmesh.relay.routing import MeshRouting
from altmesh.relay.security import LinkSecurityLog
from altmesh.state import SqliteReplayStore, StateDB

log = logging.getLogger("altmesh.relay")

COUNTER_SAVE_SECONDS = 30.0
# On SIGTERM, after announcing its links at the highest cost: how long the relay gives the mesh
# to route new streams around it before it starts waiting for the streams that cross it to end
# (announcements take a flood and a shortest-path run, some 0.1-0.3 s), so that a stream opened
# just before its neighbours moved their routes is not cut when the relay closes its links.
DRAIN_REROUTE_SECONDS = 0.5


def config_peers(config: Config) -> tuple[PeerSpec, ...]:
    """The `[[mesh.peers]]` of the config as mesh peers (the current key first)."""
    if config.mesh is None:
        return ()
    return tuple(
        PeerSpec(
            peer.name,
            tuple(
                decode_public_key(key)
                for key in (peer.public_key, peer.previous_public_key)
                if key is not None
            ),
            peer.endpoints,
            "config",
        )
        for peer in config.mesh.peers
    )


def load_keys(config: Config) -> list[StaticKeyPair]:
    """The node's static key, then the previous one while a rotation overlaps."""
    keys = [StaticKeyPair.from_private(read_private_key(config.node.private_key_file))]
    if config.node.previous_private_key_file is not None:
        keys.append(
            StaticKeyPair.from_private(read_private_key(config.node.previous_private_key_file))
        )
    return keys


class Relay:
    def __init__(self, config: Config) -> None:
        self.config = config
        settings = config.relay
        assert settings is not None
        self.settings = settings
        self.metrics = NodeMetrics()
        self.events = ev.SecurityEventLog(
            config.log.events_file,
            "relay",
            **self.metrics.event_log_hooks(),
            aggregate_seconds=config.log.aggregate_seconds,
            max_lines_per_second=config.log.max_events_per_second,
            max_lines_burst=config.log.max_events_burst,
        )
        self.keys = load_keys(config)
        self.admission = Admission(
            settings,
            load_policy(config),
            self.metrics,
            self.events,
            max_pending=settings.max_pending_handshakes,
            max_pending_per_source=settings.max_pending_handshakes_per_source,
        )
        self.state = StateDB(config.node.state_dir, on_write_failure=self._state_write_failed)
        self.replay_store = SqliteReplayStore(
            self.state, freshness_seconds=config.node.handshake_freshness_seconds
        )
        # Every link reads into this one buffer (the loop reads one socket at a time).
        self.read_buffer = ReadBuffer()
        # Every handshake this relay starts (rekeys) takes its timestamp from here.
        self.timestamps = TimestampIssuer(time.time)
        self.link_cfg = config.link_config()
        self.links: set[RelayLink] = set()
        self.attached = AttachedNodes()
        self.server: asyncio.AbstractServer | None = None
        self.metrics_server: Any = None
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        # Counts since the last write to SQLite (lifetime totals survive restarts there).
        self.unsaved: collections.Counter[str] = collections.Counter()
        # Audit aid: every stream byte this relay can see (after link decryption), appended.
        self.capture: BinaryIO | None = None
        if settings.forwarded_capture_file is not None:
            self.capture = open(settings.forwarded_capture_file, "ab")  # noqa: SIM115
        self.forwarding = Forwarder(
            self.metrics,
            self.unsaved,
            self.capture,
            events=self.events,
            max_buffered_bytes=settings.max_buffered_bytes,
        )
        self.metrics.buffered_bytes.set_function(lambda: self.forwarding.buffer.buffered)
        self.security = LinkSecurityLog(self.events, self.metrics, self.unsaved)
        # The mesh ([mesh] in the config): links to other relays, routing, peers from DNS.
        self.name = settings.name or ""
        self.hop_limit = 1  # without a mesh, streams go only to nodes attached here
        self.mesh: MeshLinks | None = None
        self.routing: MeshRouting | None = None
        self.discovery: RelayDiscovery | None = None
        mesh = config.mesh
        if mesh is not None:
            self.hop_limit = mesh.hop_limit
            self.mesh = MeshLinks(
                local=self.keys[0],
                link_config=self.link_cfg,
                timestamps=self.timestamps,
                timings=MeshTimings(
                    probe_interval=mesh.probe_interval_seconds,
                    dead_after=mesh.dead_after_seconds,
                    reconnect_min=mesh.reconnect_min_seconds,
                    reconnect_max=mesh.reconnect_max_seconds,
                ),
                hooks=self,
                make_link=self._dialed_link,
                metrics=self.metrics,
            )
            if mesh.dns_discovery and config.dns is not None:
                self.discovery = RelayDiscovery(
                    AltResolver(
                        config.dns.servers,
                        parse_trust_anchors(config.dns.trust_anchors),
                        config.network.prefix,
                        config.dns.timeout_seconds,
                    ),
                    self.state,
                    own_key=self.keys[0].public,
                    interval=mesh.dns_refresh_seconds,
                    on_change=self._dns_peers_changed,
                )
                self.discovery.load_saved()
            self.mesh.set_peers(self._peers(config))
        # [dashboard]: registration, heartbeats and security events (relay/reporting.py).
        self.reporter: Reporter | None = None
        if config.dashboard is not None:
            self.reporter = Reporter(self, config.dashboard)
            self.events.on_record = self.reporter.record

    # ------------------------------------------------------------------ lifetime

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        listen = self.settings.listen
        self.server = await loop.create_server(
            self._new_link, listen.host, listen.port, backlog=1024, reuse_address=True
        )
        if self.settings.metrics_listen is not None:
            self.metrics_server = self.metrics.serve(self.settings.metrics_listen)
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        log.info(
            "relay %s listening on %s (policy %s)",
            encode_public_key(self.keys[0].public),
            listen,
            self.admission.policy.mode,
        )
        if self.mesh is not None:
            self.routing = MeshRouting(
                self.keys[0].public,
                prefix=self.config.network.prefix,
                state=self.state,
                send=self._send_route_info,
                destinations=self.attached.addresses,
                events=self.events,
                metrics=self.metrics,
                after_run=self._routes_ran,
            )
            self.mesh.start()
            if self.discovery is not None:
                self.discovery.start()
        # A line on stdout that tests and service managers can wait for.
        print(f"altmesh-relay ready on {listen}", flush=True)
        saver = asyncio.create_task(self._save_counters_periodically())
        if self.reporter is not None:
            self.reporter.start(loop)
        while not self._stop.is_set():
            reload_wait = asyncio.ensure_future(self._reload.wait())
            stop_wait = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({reload_wait, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            reload_wait.cancel()
            stop_wait.cancel()
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
        saver.cancel()
        await self.drain()
        return 0

    async def _save_counters_periodically(self) -> None:
        while True:
            await asyncio.sleep(COUNTER_SAVE_SECONDS)
            self.save_counters()

    def save_counters(self) -> None:
        # Kept for the next try if the database refuses them (a full disk).
        if self.state.add_counters(self.unsaved):
            self.unsaved.clear()

    def _state_write_failed(self) -> None:
        self.metrics.state_write_failures.inc()
        self.events.emit(ev.STATE_UNAVAILABLE, "write_failed", source="state")

    def reload(self) -> None:
        """SIGHUP: re-read policy and keys; existing links stay up."""
        try:
            config = load_config(self.config.source)
            if config.role != "relay":
                raise ConfigError("role", "is no longer 'relay'")
            policy = load_policy(config)
            keys = load_keys(config)
        except (ConfigError, KeyFileError) as err:
            log.error("reload failed, keeping the old settings: %s", err)
            return
        old_publics = [k.public for k in self.keys]
        new_publics = [k.public for k in keys]
        if old_publics != new_publics:
            self.events.emit(
                ev.KEY_ROTATION,
                "keys_reloaded",
                public_key=encode_public_key(new_publics[0]),
                previous_keys=",".join(encode_public_key(k) for k in new_publics[1:]),
            )
        self.keys = keys
        self.config = config
        self.admission.policy = policy
        if self.reporter is not None:
            self.reporter.reloaded(config, keys[0].public)
        self.events.reopen()
        if self.mesh is not None:
            # Peers that remain keep their links; removed ones are closed, added ones dialled.
            self.mesh.set_local_key(keys[0])
            self.mesh.set_peers(self._peers(config))
            if config.mesh is not None:
                self.hop_limit = config.mesh.hop_limit
        elif config.mesh is not None:
            log.warning("[mesh] was added to the config: restart the relay to join the mesh")
        # Links whose key the new policy refuses are closed (relay peers' keys are always
        # allowed); all others keep running.
        for link in list(self.links):
            remote = link.conn.remote_static
            if remote is not None and not self._authorize(remote):
                self.security.refused_after_reload(link, remote)
                link.close("key no longer allowed")
        log.info("reloaded: policy %s, %d allowed keys", policy.mode, len(policy.allowed))

    async def drain(self) -> None:
        """SIGTERM: stop accepting, announce this relay's links at the highest cost (the mesh
        routes new streams around it), let streams finish for drain_seconds, close links
        cleanly."""
        log.info("draining %d links", len(self.links))
        if self.server is not None:
            self.server.close()
        if self.mesh is not None:
            self.mesh.stop()
        if self.discovery is not None:
            self.discovery.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_seconds
        if self.routing is not None and self.routing.router.neighbors:
            # Peers route new streams around this relay from now on; the ones crossing it end.
            self.routing.drain()
            await asyncio.sleep(min(DRAIN_REROUTE_SECONDS, self.settings.drain_seconds))
        while self.forwarding.open_routes(self.links) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.routing is not None:
            self.routing.stop()
        for link in list(self.links):
            link.close("relay shutting down")
        await asyncio.sleep(0.05)  # let the close records leave
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        self.save_counters()
        self.state.close()
        self.events.close()
        if self.reporter is not None:
            await self.reporter.stop()  # after the log's last lines were handed over
        if self.capture is not None:
            self.capture.close()
        log.info("stopped")

    # ------------------------------------------------------------------ accepting links

    def _new_link(self) -> RelayLink:
        conn = LinkConnection.responder(
            self.link_cfg,
            self.keys,
            authorize=self._authorize,
            replay_store=self.replay_store,
            timestamps=self.timestamps,
        )
        return LinkTransport(
            conn,
            self,
            RelayLinkState(),
            on_connection_made=self._admit,
            read_buffer=self.read_buffer,
            on_work_paused=lambda _link: self.metrics.work_pauses.inc(),
        )

    def _authorize(self, public_key: bytes) -> bool:
        """The responder's key check: the policy's, and every relay peer's key under any policy."""
        if self.mesh is not None and self.mesh.is_peer_key(public_key):
            return True
        return self.admission.allows_key(public_key)

    def _dialed_link(self, conn: LinkConnection) -> RelayLink:
        """A link this relay dials to a mesh peer (accepted links come from `_new_link`)."""
        return LinkTransport(conn, self, RelayLinkState(), on_connection_made=self._track)

    def _track(self, link: RelayLink) -> bool:
        self.links.add(link)
        return True

    def _peers(self, config: Config) -> tuple[PeerSpec, ...]:
        """The mesh peers: the config's first, then the relays DNS gave."""
        dns = self.discovery.peers if self.discovery is not None else ()
        return config_peers(config) + dns

    def _dns_peers_changed(self, _peers: tuple[PeerSpec, ...]) -> None:
        if self.mesh is not None:
            self.mesh.set_peers(self._peers(self.config))

    def _send_route_info(self, neighbor: bytes, payload: bytes) -> bool:
        link = self.mesh.link_to(neighbor) if self.mesh is not None else None
        if link is None:
            return False
        try:
            link.conn.send_route_info(payload)
        except LinkNotEstablished:
            return False
        link.kick()
        return True

    def _admit(self, link: RelayLink) -> bool:
        now = asyncio.get_running_loop().time()
        if not self.admission.admit(link, link.peername, len(self.links), now):
            return False
        self.links.add(link)
        return True

    # ------------------------------------------------------------------ LinkHandler

    def link_event(self, link: RelayLink, event: Event) -> None:
        match event:
            case StreamData(stream_id, data):
                self.forwarding.on_data(link, stream_id, data)
            case StreamWritable(stream_id):
                self.forwarding.on_writable(link, stream_id)
            case StreamOpened():
                self._stream_opened(link, event)
            case StreamEnded(stream_id):
                self.forwarding.on_ended(link, stream_id)
            case StreamReset(stream_id, code, reason):
                self.forwarding.on_reset(link, stream_id, code, reason)
            case HandshakeComplete(remote_static, remote_address, probe):
                self.admission.handshake_ended(link)
                self._established(link, remote_static, remote_address, probe=probe)
            case Rekeyed(initiated_by_us):
                self.security.rekeyed(link, initiated_by_us)
            case SecurityNotice(kind, detail):
                self.security.notice(link, kind, detail)
            case LinkClosed(reason):
                link.close(f"peer closed: {reason}")
            case PongReceived(rtt):
                if self.mesh is not None:
                    self.mesh.pong(link, rtt)  # only relay links are pinged
            case RouteInfoReceived(payload):
                self._route_info(link, payload)
            case _:
                assert_never(event)

    def link_failed(self, link: RelayLink, error: ProtocolError) -> None:
        self.security.failed(link, error)

    def link_writable(self, link: RelayLink) -> None:
        self.forwarding.link_writable(link)

    def link_lost(self, link: RelayLink, reason: str) -> None:
        self.admission.handshake_ended(link)
        self.links.discard(link)
        if link.app.established:
            self.metrics.links.dec()
        if link.app.attached:
            self.attached.detach(link)
            self._destinations_changed()
        if self.mesh is not None:
            self.mesh.link_lost(link)
        self.forwarding.link_lost(link)

    # ------------------------------------------------------------------ what links do

    def _established(
        self,
        link: RelayLink,
        remote_static: bytes,
        remote_address: ipaddress.IPv6Address,
        *,
        probe: bool = False,
    ) -> None:
        """A handshake completed: the peer is a relay of the mesh, a node that attaches, or a
        node that only measures this relay (a probe link: it gets PONGs, and no route to its
        address goes through here, so a node that probes the relays it is not attached to does
        not pull its own streams away from the relay it is attached to)."""
        if link.app.established:
            return  # a link is classified once: rekeys are internal to the core
        self.metrics.handshakes.labels("ok").inc()
        self.unsaved["handshakes_ok"] += 1
        self.metrics.links.inc()
        if probe:
            link.app.probe = True
            log.debug("probe link from %s: key %s", link.peername, encode_public_key(remote_static))
            return
        if self.mesh is not None and self.mesh.link_established(link):
            return  # kept as the peer's link, or closed as a duplicate
        self.attached.attach(link, remote_static, remote_address)
        self._destinations_changed()

    def _stream_opened(self, link: RelayLink, event: StreamOpened) -> None:
        from_relay = link.app.mesh_peer is not None
        if event.hops_left is not None and not from_relay:
            self._node_violation(link, "relay_open_from_node", "RELAY_OPEN is only for relay links")
            return
        decision = choose_target(
            event.destination,
            event.hops_left,
            link,
            attached=self.attached,
            routes=self.routing,
            relay_link=self.mesh.link_to if self.mesh is not None else _no_link,
            hop_limit=self.hop_limit,
        )
        if isinstance(decision, Target):
            route = self.forwarding.open_route(link, event, decision.link, decision.hops_left)
            if route is not None and not from_relay:
                # At the loop's next pass: the link that was read is written first when its
                # input is done, so a STREAM_PATH queued now would leave before the OPEN that
                # the stream waits for; the path is only for the node to show.
                asyncio.get_running_loop().call_soon(
                    flush_kicked_after, self._send_path, link, event, decision
                )
        else:
            self.forwarding.open_route(link, event, decision)

    def _send_path(self, link: RelayLink, event: StreamOpened, target: Target) -> None:
        """Tell the node that opened the stream which relays carry it (STREAM_PATH)."""
        me = self.keys[0].public
        keys: tuple[bytes, ...] = (me,)
        if target.hops_left is not None:
            routed = self.routing.path(event.destination) if self.routing is not None else ()
            keys = routed if routed[:1] == (me,) else (me, *routed)
        hops = tuple(PathHop(key, self._relay_name(key)) for key in keys)
        if link.closed:
            return
        try:
            link.conn.send_route_info(encode_stream_path(StreamPath(event.stream_id, hops)))
        except LinkNotEstablished:
            return
        link.kick()

    def _relay_name(self, key: bytes) -> str:
        if key == self.keys[0].public:
            return self.name
        name = self.mesh.peer_name(key) if self.mesh is not None else None
        return name or ""

    def _route_info(self, link: RelayLink, payload: bytes) -> None:
        peer = link.app.mesh_peer
        if peer is None:
            self._node_violation(link, "route_info_from_node", "ROUTE_INFO is only for relay links")
            if self.discovery is not None:
                self.discovery.refresh_soon()  # perhaps a relay that DNS lists by now
            return
        if self.routing is None or self.mesh is None or self.mesh.link_to(peer) is not link:
            return  # a duplicate being closed: its peer sends everything again on the other
        if route_info_type(payload) != RouteInfoType.ANNOUNCEMENTS:
            log.debug("ignoring a ROUTE_INFO payload of another version or type from a relay")
            return
        try:
            self.routing.receive(peer, payload)
        except ProtocolError as error:
            self.security.notice(link, error.kind, str(error))

    def _node_violation(self, link: RelayLink, kind: str, reason: str) -> None:
        """A node sent a record only relays may send: the link is closed (docs/protocol.md 6.2)."""
        self.security.notice(link, kind, reason)
        link.close(reason)

    def _destinations_changed(self) -> None:
        if self.routing is not None:
            self.routing.destinations_changed()

    # ------------------------------------------------------------------ mesh (MeshHooks)

    def mesh_link_up(self, neighbor: bytes, link: RelayLink) -> None:
        if self.routing is not None:
            self.routing.neighbor_up(neighbor)

    def mesh_link_down(self, neighbor: bytes, link: RelayLink) -> None:
        if self.routing is not None:
            self.routing.neighbor_down(neighbor)

    def mesh_rtt(self, neighbor: bytes, rtt: float) -> None:
        if self.routing is not None:
            self.routing.observe_rtt(neighbor, rtt)

    def _routes_ran(self) -> None:
        if self.mesh is None or self.routing is None:
            return
        for name, neighbor in self.mesh.up_links():
            routed = self.routing.routes_over(neighbor)
            self.metrics.mesh_link_routed.labels(name).set(1 if routed else 0)

    def mesh_link_status(self) -> list[MeshLinkStatus]:
        """Every mesh peer with the state of its link and its RTT (for reporting and status)."""
        return self.mesh.status() if self.mesh is not None else []


def _no_link(_neighbor: bytes) -> RelayLink | None:
    return None
