"""A relay reports to a real dashboard (gunicorn, SQLite): registration, heartbeats with its
counters and attached nodes, security events delivered exactly once through outages and a
`kill -9`, the on-disk queue's bound, and liveness (SRV weight) with a real named.

    relay --httpx--> gunicorn (altmesh_dashboard) --RFC 2136--> named
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import altmesh
import pytest
from altmesh.protocol import network_prefix, node_address
from altmesh.testing.dashboard import DashboardServer
from altmesh.testing.named import NamedServer

from . import helpers, raw_peers
from .helpers import ALTMESH, Node, Proc
from .reporting_support import (
    RELAY_NAME,
    ReportingRelay,
    dns_answer,
    dns_dashboard,
    handshake_failures,
    make_handshake_failures,
)

PREFIX = network_prefix(helpers.PREFIX)


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[DashboardServer]:
    with DashboardServer.start(tmp_path / "dashboard") as server:
        yield server


def _stop(relay: ReportingRelay) -> None:
    if relay.proc is not None:
        relay.stop()


def test_a_relay_registers_and_heartbeats_and_the_dashboard_lists_it_up_with_its_counters(
    tmp_path: Path, dashboard: DashboardServer
) -> None:
    relay = ReportingRelay(
        tmp_path, dashboard.url, dashboard.relay_token(RELAY_NAME), heartbeat_seconds=1
    )
    service = Node("web", tmp_path)
    helpers.write_client_config(
        service, "service", relay.node, relay.port, service=("web.alt", "127.0.0.1:9")
    )
    serve: Proc | None = None
    try:
        relay.start()
        serve = Proc("web", [*ALTMESH, "up", "--config", str(service.config)], tmp_path)
        helpers.wait_linked(service)
        result = asyncio.run(raw_peers.transfer(relay.port, relay.node.public, 3 * 2**20))
        assert result.received == 3 * 2**20

        def reported() -> bool:
            listed = dashboard.relays().get(RELAY_NAME)
            return bool(listed) and listed["bytes_out"] >= 3 * 2**20 and listed["attached"] >= 1

        helpers.wait_until(reported, 20, "a heartbeat with the transfer's bytes")
        listed = dashboard.relays()[RELAY_NAME]
        assert listed["state"] == "up"
        assert listed["public_key"] == relay.node.public_b64
        assert listed["address"] == str(node_address(PREFIX, relay.node.public))
        assert listed["endpoints"] == [{"host": "127.0.0.1", "port": relay.port}]
        assert listed["bytes_in"] >= 3 * 2**20
        assert listed["active_streams"] == 0
        assert listed["version"] == altmesh.__version__
        assert 0.0 <= listed["load"] <= 1.0
        assert listed["links"] == []  # no mesh peers
        assert listed["attached"] == 1  # the service; the transfer's two links have left
        assert relay.metric("altmesh_reporting_heartbeats_total") >= 1
        assert relay.metric("altmesh_reporting_registered") == 1
        assert relay.metric("altmesh_reporting_last_success_timestamp_seconds") > time.time() - 30
    finally:
        if serve is not None:
            serve.stop()
        _stop(relay)


def _wait_stored(dashboard: DashboardServer, count: int, timeout: float = 90.0) -> None:
    helpers.wait_until(
        lambda: len(handshake_failures(dashboard)) >= count,
        timeout,
        f"{count} handshake_failed events stored by the dashboard",
    )


def test_security_events_arrive_exactly_once_in_order_through_a_dashboard_outage_and_a_kill_9(
    tmp_path: Path, dashboard: DashboardServer
) -> None:
    relay = ReportingRelay(
        tmp_path,
        dashboard.url,
        dashboard.relay_token(RELAY_NAME),
        heartbeat_seconds=1,
        event_batch_max=4,
    )
    try:
        relay.start()
        before = make_handshake_failures(relay.port, 6)
        _wait_stored(dashboard, 6)

        # gunicorn stopped by PID: its socket stays open, so requests are accepted by the
        # kernel and never answered (timeouts), the worst kind of outage for a client.
        dashboard.stop()
        during = make_handshake_failures(relay.port, 9)
        helpers.wait_until(
            lambda: (
                relay.metric("altmesh_reporting_queue_events") >= 9
                and relay.metric('altmesh_reporting_failures_total{kind="timeout"}') >= 1
            ),
            20,
            "the outage's events queued on disk and a timeout counted",
        )
        # The events wait on disk: a kill -9 of the relay loses none of them.
        assert relay.stop(signal.SIGKILL) == -signal.SIGKILL
        relay.start()
        assert relay.metric("altmesh_reporting_queue_events") == 9
        after = make_handshake_failures(relay.port, 3)
        dashboard.restart()
        _wait_stored(dashboard, 18)
        time.sleep(2)  # a re-sent batch would be stored by now; it must not be stored twice

        stored = handshake_failures(dashboard)
        assert [e["peer"] for e in stored] == before + during + after
        ids = [e["event_id"] for e in stored]
        assert len(set(ids)) == len(ids) == 18
        assert all(e["severity"] == "warning" and e["detail"]["count"] == 1 for e in stored)
        helpers.wait_until(
            lambda: relay.metric("altmesh_reporting_queue_events") == 0, 10, "an empty queue"
        )
    finally:
        _stop(relay)


def test_a_full_on_disk_queue_drops_the_oldest_events_and_reports_how_many(
    tmp_path: Path, dashboard: DashboardServer
) -> None:
    relay = ReportingRelay(
        tmp_path,
        dashboard.url,
        dashboard.relay_token(RELAY_NAME),
        heartbeat_seconds=1,
        event_queue_max=100,
        event_batch_max=50,
    )
    helpers.set_options(relay.node.config, "log", max_events_per_second=1000, max_events_burst=1000)
    try:
        relay.start()
        helpers.wait_until(
            lambda: relay.metric("altmesh_reporting_registered") == 1, 20, "registration"
        )
        dashboard.stop()
        peers = make_handshake_failures(relay.port, 130)
        helpers.wait_until(
            lambda: (
                relay.metric('altmesh_reporting_events_dropped_total{reason="queue_full"}') == 30
            ),
            20,
            "30 events dropped from the full queue",
        )
        assert relay.metric("altmesh_reporting_queue_events") == 100
        dashboard.restart()
        _wait_stored(dashboard, 100)

        def dropped_reported() -> list[dict[str, object]]:
            return [e for e in dashboard.stored_events(RELAY_NAME) if e["kind"] == "events_dropped"]

        helpers.wait_until(lambda: bool(dropped_reported()), 20, "an events_dropped event")
        stored = [e["peer"] for e in handshake_failures(dashboard)]
        # The 100 newest are all stored, in order. A batch the relay sent while gunicorn was
        # stopped can still be stored (the test keeps the listening socket, so the request
        # waits in its backlog and is answered after the restart, when the relay has given up
        # on it): the only others allowed are such older events, in their order.
        assert stored[-100:] == peers[30:], stored
        assert stored == [peer for peer in peers if peer in set(stored)], stored
        [report] = dropped_reported()
        assert isinstance(report["detail"], dict)
        assert report["detail"]["reason"] == "queue_full"
        assert report["detail"]["count"] == 30
    finally:
        _stop(relay)


def test_a_dashboard_that_accepts_connections_but_never_answers_does_not_delay_streams(
    tmp_path: Path, dashboard: DashboardServer
) -> None:
    relay = ReportingRelay(
        tmp_path,
        dashboard.url,
        dashboard.relay_token(RELAY_NAME),
        heartbeat_seconds=1,
        timeout_seconds=30,
    )
    helpers.set_options(relay.node.config, "log", max_events_per_second=1000, max_events_burst=1000)
    try:
        relay.start()
        helpers.wait_until(
            lambda: relay.metric("altmesh_reporting_registered") == 1, 20, "registration"
        )
        # From now on every request hangs for timeout_seconds (30 s) in the kernel's backlog.
        dashboard.stop()
        make_handshake_failures(relay.port, 50)  # events for the reporter while it hangs
        started = time.monotonic()
        for _ in range(3):
            result = asyncio.run(raw_peers.transfer(relay.port, relay.node.public, 8 * 2**20))
            assert result.received == 8 * 2**20
        elapsed = time.monotonic() - started
        print(f"3 x 8 MiB through the relay in {elapsed:.2f} s while the dashboard hung")
        # No request has timed out yet: the streams completed while the reporter was still
        # waiting for its first answer, so they did not wait for it.
        assert relay.metric('altmesh_reporting_failures_total{kind="timeout"}') == 0
        assert relay.metric("altmesh_reporting_queue_events") == 50
    finally:
        _stop(relay)


def _srv_weights(named: NamedServer) -> list[int]:
    """The weights of the relay's DNS-SD SRV records (`priority weight port target`)."""
    return [int(r.split()[1]) for r in dns_answer(named, f"{RELAY_NAME}._altmesh._tcp.alt.", "SRV")]


def test_a_killed_relay_goes_stale_and_its_srv_weight_drops_to_zero(tmp_path: Path) -> None:
    with dns_dashboard(tmp_path, RELAY_STALE_AFTER_SECONDS=3, RELAY_DOWN_AFTER_SECONDS=6) as lab:
        relay = ReportingRelay(
            tmp_path,
            lab.dashboard.url,
            lab.dashboard.relay_token(RELAY_NAME),
            heartbeat_seconds=1,
        )
        try:
            relay.start()
            # An idle relay: load near 0, so its weight is the idle weight (above 0).
            helpers.wait_until(
                lambda: any(w > 0 for w in _srv_weights(lab.named)), 30, "an SRV weight above 0"
            )
            assert dns_answer(lab.named, f"{RELAY_NAME}.alt.", "AAAA") == [
                str(node_address(PREFIX, relay.node.public))
            ]
            assert relay.stop(signal.SIGKILL) == -signal.SIGKILL
            helpers.wait_until(
                lambda: lab.dashboard.relays()[RELAY_NAME]["state"] in ("stale", "down"),
                30,
                "the killed relay listed stale",
            )
            lab.dashboard.flask("relays", "check-liveness")
            helpers.wait_until(
                lambda: _srv_weights(lab.named) == [0], 10, "the SRV weight set to 0"
            )
            # Started again, its next heartbeat gives it its weight back.
            relay.start()
            helpers.wait_until(
                lambda: any(w > 0 for w in _srv_weights(lab.named)), 30, "the weight restored"
            )
        finally:
            _stop(relay)


def test_a_sighup_with_a_new_key_or_new_endpoints_registers_the_relay_again(
    tmp_path: Path, dashboard: DashboardServer
) -> None:
    from altmesh.keyfile import encode_public_key, generate_key_file

    relay = ReportingRelay(
        tmp_path, dashboard.url, dashboard.relay_token(RELAY_NAME), heartbeat_seconds=1
    )
    try:
        proc = relay.start()
        helpers.wait_until(lambda: RELAY_NAME in dashboard.relays(), 20, "the registration")
        assert dashboard.relays()[RELAY_NAME]["endpoints"] == [
            {"host": "127.0.0.1", "port": relay.port}
        ]

        helpers.set_options(
            relay.node.config,
            "relay",
            advertise=[f"127.0.0.1:{relay.port}", f"relay1.example:{relay.port}"],
        )
        os.kill(proc.pid, signal.SIGHUP)
        helpers.wait_until(
            lambda: len(dashboard.relays()[RELAY_NAME]["endpoints"]) == 2,
            20,
            "the new endpoints registered",
        )
        assert dashboard.relays()[RELAY_NAME]["endpoints"][1] == {
            "host": "relay1.example",
            "port": relay.port,
        }

        new_key_file = tmp_path / "relay-new.key"
        new_public = generate_key_file(new_key_file)
        text = relay.node.config.read_text().replace(
            f'private_key_file = "{relay.node.key_file}"',
            f'private_key_file = "{new_key_file}"\n'
            f'previous_private_key_file = "{relay.node.key_file}"',
        )
        relay.node.config.write_text(text)
        os.kill(proc.pid, signal.SIGHUP)
        helpers.wait_until(
            lambda: dashboard.relays()[RELAY_NAME]["public_key"] == encode_public_key(new_public),
            20,
            "the new key registered",
        )
        listed = dashboard.relays()[RELAY_NAME]
        assert listed["address"] == str(node_address(PREFIX, new_public))
        assert listed["state"] == "up"
    finally:
        _stop(relay)
