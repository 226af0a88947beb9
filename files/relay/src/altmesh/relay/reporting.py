"""The relay reports to the dashboard: it registers, sends heartbeats, and ships its security
events, off the forwarding path (docs/relay-config.md, `[dashboard]`).

Two threads, none of whose work runs on the event loop:

- the **persister** takes the security log's records from a bounded in-memory hand-off (the
  loop's only work per record is one `put_nowait`) and writes them to the on-disk queue
  (`altmesh.eventqueue`, SQLite in the state directory) in batches, within milliseconds;
- the **sender** holds its own `httpx.Client` (`altmesh.dashboard_client`): it registers (at
  start, and again after SIGHUP changed the key or the advertised endpoints, or when the
  dashboard says the relay is not registered), sends a heartbeat every interval, and ships the
  queue in batches of at most `event_batch_max`, removing events only once the dashboard
  answered for them. A failed request is retried after an exponential backoff with full jitter
  (BACKOFF_MIN_SECONDS doubling up to BACKOFF_MAX_SECONDS), reset by the next success.

For a heartbeat the sender asks the loop for a snapshot (`call_soon_threadsafe`: copying the
list of attached addresses and the mesh links' state) and waits for it; the loop never waits for
the sender, nor for the network.

**Load** (the heartbeat's `load`, which the dashboard turns into the relay's SRV weight) is the
largest of three fractions, each of what limits the relay first:

- the CPU time of the relay process over the wall-clock time since the last heartbeat: the
  relay forwards on one event loop, i.e. one core, so 1.0 means forwarding is CPU-bound and
  cannot go faster (a byte rate over a configured capacity would need a figure that differs
  from machine to machine; the CPU time measures that capacity on the machine itself);
- established links over `relay.max_links` (at 1.0 new nodes are refused);
- bytes held for slow receivers over `relay.max_buffered_bytes` (at 1.0 streams are reset).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import queue
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from altmesh import __version__
from altmesh.backoff import Backoff
from altmesh.config import Config, DashboardSettings
from altmesh.dashboard_client import FAILURE_KINDS, DashboardClient, DashboardError, read_token
from altmesh.eventqueue import EventQueue, QueuedEvent
from altmesh.keyfile import KeyFileError
from altmesh.relay.report_payloads import (
    attached_report,
    dropped_event,
    event_body,
    links_report,
    registration,
    relay_load,
    take_batch,
)

if TYPE_CHECKING:
    from altmesh.relay.server import Relay

log = logging.getLogger("altmesh.relay.reporting")

BACKOFF_MIN_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 60.0
# Records waiting in memory for the persister; beyond, they are dropped and counted (the
# security log's own bound, 20 lines/s by default, keeps this far from full).
HANDOFF_MAX = 10_000
# The persister writes at most this many records per transaction.
PERSIST_BATCH = 1000
SNAPSHOT_WAIT_SECONDS = 10.0
# At stop: writing the last records to disk takes milliseconds; a request under way is given
# this long and then abandoned (the threads are daemons; SQLite's WAL keeps what was committed).
STOP_PERSISTER_WAIT_SECONDS = 10.0
STOP_SENDER_WAIT_SECONDS = 1.0
# Until the dashboard has answered with its interval (and while heartbeat_seconds is 0).
FIRST_HEARTBEAT_INTERVAL = 10.0
# While requests keep failing, the failure is logged again at most this often.
FAILURE_LOG_EVERY_SECONDS = 60.0
REFUSED_EVENT = re.compile(r"^events\[(\d+)\]")

DROP_REASONS = ("queue_full", "handoff_full", "refused")


class ReportingMetrics:
    """The reporter's metrics, in the relay's registry (served on `metrics_listen`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.queue_depth = Gauge(
            "altmesh_reporting_queue_events",
            "Security events in the on-disk queue, not yet delivered to the dashboard",
            registry=r,
        )
        self.failures = Counter(
            "altmesh_reporting_failures",
            "Requests to the dashboard that failed, by kind",
            ["kind"],
            registry=r,
        )
        self.last_success = Gauge(
            "altmesh_reporting_last_success_timestamp_seconds",
            "Unix time of the last request the dashboard answered with success (0: none yet)",
            registry=r,
        )
        self.dropped = Counter(
            "altmesh_reporting_events_dropped",
            "Security events never delivered: the queue was full (oldest dropped), the "
            "in-memory hand-off was full, or the dashboard refused the event",
            ["reason"],
            registry=r,
        )
        self.delivered = Counter(
            "altmesh_reporting_events_delivered",
            "Security events the dashboard answered for (stored, or already stored)",
            ["result"],
            registry=r,
        )
        self.heartbeats = Counter(
            "altmesh_reporting_heartbeats", "Heartbeats the dashboard accepted", registry=r
        )
        self.registered = Gauge(
            "altmesh_reporting_registered",
            "1 while the dashboard has this relay's current registration",
            registry=r,
        )
        for kind in FAILURE_KINDS:
            self.failures.labels(kind)
        for reason in DROP_REASONS:
            self.dropped.labels(reason)
        for result in ("accepted", "duplicate"):
            self.delivered.labels(result)


@dataclass(frozen=True)
class Snapshot:
    """What the heartbeat needs from the event loop, copied there."""

    attached: list[ipaddress.IPv6Address]
    mesh_links: list[Any]  # MeshLinkStatus of the mesh (peer_name, state, rtt_ms, public_key)


def take_snapshot(relay: Relay) -> Snapshot:
    """On the event loop: copies only (the thread turns them into the report)."""
    links: list[Any] = list(relay.mesh_link_status())  # empty without [mesh]
    return Snapshot(relay.attached.addresses(), links)


_STOP = object()


class Reporter:
    """Reports one relay to the dashboard of its `[dashboard]` table."""

    def __init__(self, relay: Relay, settings: DashboardSettings) -> None:
        self.relay = relay
        self.settings = settings
        self.metrics = ReportingMetrics(relay.metrics.registry)
        self.queue = EventQueue(
            relay.config.node.state_dir,
            settings.event_queue_max,
            on_dropped=self.metrics.dropped.labels("queue_full").inc,
        )
        self.metrics.queue_depth.set(self.queue.depth)
        self._token = read_token(settings.token_file)
        self._handoff: queue.Queue[object] = queue.Queue(HANDOFF_MAX)
        self._lock = threading.Lock()
        self._registration = registration(
            relay.config, relay.keys[0].public, relay.settings.advertise
        )
        self._registration_changed = True
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._backoff = Backoff(BACKOFF_MIN_SECONDS, BACKOFF_MAX_SECONDS)
        self._batch_limit = settings.event_batch_max
        self._failing_since: float | None = None
        self._failures_unlogged = 0
        self._failure_logged_at = 0.0
        self._cpu_mark = (time.monotonic(), time.process_time())

    # ------------------------------------------------------------ the event loop's side
    def record(self, record: dict[str, Any]) -> None:
        """The security log's `on_record` hook (on the loop): hand the line to the persister."""
        try:
            self._handoff.put_nowait(dict(record))
        except queue.Full:
            self.metrics.dropped.labels("handoff_full").inc()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for name, target in (("persister", self._run_persister), ("sender", self._run_sender)):
            thread = threading.Thread(target=target, name=f"altmesh-reporting-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def reloaded(self, config: Config, public_key: bytes) -> None:
        """After SIGHUP: register again if the key or the endpoints changed; re-read the token."""
        assert config.relay is not None
        new = registration(config, public_key, config.relay.advertise)
        token = None
        if config.dashboard is not None:
            try:
                token = read_token(config.dashboard.token_file)
            except KeyFileError as err:
                log.error("dashboard token not re-read, keeping the old one: %s", err)
        with self._lock:
            if token and token != self._token:
                self._token = token
                self._registration_changed = True
            if new != self._registration:
                self._registration = new
                self._registration_changed = True
                log.info("registration changed (key or endpoints): registering again")
        self._wake.set()

    async def stop(self) -> None:
        """Let the persister write what the log handed over, then end both threads. A request
        under way is not waited for beyond STOP_SENDER_WAIT_SECONDS (a hanging dashboard must
        not hold up a restart): its events stay queued and are sent again by the next run,
        with the same ids."""
        self._stopping.set()
        self._wake.set()
        self._handoff.put(_STOP)
        await asyncio.to_thread(self._join)

    def _join(self) -> None:
        persister, sender = self._threads if len(self._threads) == 2 else (None, None)
        if persister is None or sender is None:
            self.queue.close()
            return
        persister.join(STOP_PERSISTER_WAIT_SECONDS)
        sender.join(STOP_SENDER_WAIT_SECONDS)
        if not persister.is_alive() and not sender.is_alive():
            self.queue.close()

    # ------------------------------------------------------------ the persister thread
    def _run_persister(self) -> None:
        pending: list[dict[str, Any]] = []
        stopping = False
        while True:
            try:
                item = self._handoff.get(timeout=1.0 if pending else None)
            except queue.Empty:
                item = None
            while item is not None:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, dict):
                    pending.append(event_body(item))
                if len(pending) >= PERSIST_BATCH:
                    break
                try:
                    item = self._handoff.get_nowait()
                except queue.Empty:
                    item = None
            if pending:
                try:
                    self.queue.put_many(pending)
                except sqlite3.Error as error:
                    self._queue_write_failed(error, pending)
                    if stopping:
                        return
                    time.sleep(1.0)
                    continue
                pending = []
                self.metrics.queue_depth.set(self.queue.depth)
                self._wake.set()
            if stopping and self._handoff.empty():
                return

    def _queue_write_failed(self, error: sqlite3.Error, pending: list[dict[str, Any]]) -> None:
        """A full disk: the records wait in memory (bounded) and are written once it takes them."""
        log.error(
            "%s: cannot queue %d security events for the dashboard: %s (kept in memory, retried)",
            self.queue.path,
            len(pending),
            error,
        )
        if len(pending) > HANDOFF_MAX:
            lost = len(pending) - HANDOFF_MAX
            del pending[:lost]
            self.metrics.dropped.labels("handoff_full").inc(lost)

    # ------------------------------------------------------------ the sender thread
    def _run_sender(self) -> None:
        client = DashboardClient(
            self.settings.url,
            self._token,
            ca_file=self.settings.ca_file,
            timeout=self.settings.timeout_seconds,
        )
        interval = self.settings.heartbeat_seconds or FIRST_HEARTBEAT_INTERVAL
        next_heartbeat = 0.0
        retry_at = 0.0
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                now = time.monotonic()
                if now < retry_at:
                    self._wake.wait(retry_at - now)
                    continue
                try:
                    with self._lock:
                        changed, body, token = (
                            self._registration_changed,
                            self._registration,
                            self._token,
                        )
                    if changed:
                        client.set_token(token)
                        self._register(client, body)
                        next_heartbeat = now
                    elif now >= next_heartbeat:
                        answered = self._heartbeat(client)
                        interval = answered or interval
                        next_heartbeat = time.monotonic() + interval
                        if answered is None:
                            continue  # nothing was sent
                    elif self.queue.depth:
                        self._send_batch(client)
                    else:
                        self._wake.wait(next_heartbeat - now)
                        continue
                except DashboardError as error:
                    retry_at = time.monotonic() + self._failed(error)
                    continue
                self._succeeded()
        finally:
            client.close()

    def _register(self, client: DashboardClient, body: dict[str, Any]) -> None:
        answer = client.register_relay(body)
        with self._lock:
            if self._registration is body:
                self._registration_changed = False
        self.metrics.registered.set(1)
        log.info(
            "registered with %s as %s (%s); DNS: %s",
            self.settings.url,
            body["name"],
            body["address"],
            answer.get("dns", "?"),
        )

    def _heartbeat(self, client: DashboardClient) -> float | None:
        snapshot = self._snapshot()
        if snapshot is None:
            return None  # the loop is gone (stopping) or too busy to answer: next interval
        answer = client.heartbeat(self._report(snapshot))
        self.metrics.heartbeats.inc()
        return self.settings.heartbeat_seconds or answer.interval_seconds

    def _report(self, snapshot: Snapshot) -> dict[str, Any]:
        registry = self.relay.metrics.registry

        def sample(name: str, labels: dict[str, str] | None = None) -> float:
            return registry.get_sample_value(name, labels or {}) or 0.0

        wall, cpu = time.monotonic(), time.process_time()
        last_wall, last_cpu = self._cpu_mark
        self._cpu_mark = (wall, cpu)
        cpu_fraction = (cpu - last_cpu) / (wall - last_wall) if wall > last_wall else 0.0
        settings = self.relay.settings
        load = relay_load(
            cpu_fraction,
            sample("altmesh_links"),
            settings.max_links,
            sample("altmesh_forward_buffered_bytes"),
            settings.max_buffered_bytes,
        )
        return {
            "load": load,
            "active_streams": int(sample("altmesh_streams")),
            "bytes_in": int(sample("altmesh_stream_bytes_total", {"direction": "in"})),
            "bytes_out": int(sample("altmesh_stream_bytes_total", {"direction": "out"})),
            "version": __version__,
            "links": links_report(snapshot.mesh_links),
            "attached": attached_report(
                snapshot.attached, snapshot.mesh_links, self.relay.config.network.prefix
            ),
        }

    def _snapshot(self) -> Snapshot | None:
        loop = self._loop
        if loop is None:
            return None
        future: concurrent.futures.Future[Snapshot] = concurrent.futures.Future()

        def take() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(take_snapshot(self.relay))
                except Exception as error:
                    future.set_exception(error)

        try:
            loop.call_soon_threadsafe(take)
            return future.result(SNAPSHOT_WAIT_SECONDS)
        except (RuntimeError, concurrent.futures.TimeoutError):
            future.cancel()
            return None

    def _send_batch(self, client: DashboardClient) -> None:
        batch = self._batch()
        try:
            answer = client.send_events([event.payload() for event in batch])
        except DashboardError as error:
            if error.status == 413 and self._batch_limit > 1:
                self._batch_limit = max(1, len(batch) // 2)
                log.warning(
                    "dashboard refused a batch as too large: %d events per batch now",
                    self._batch_limit,
                )
                return
            match = REFUSED_EVENT.match(error.field or "")
            if error.kind == "refused" and match and int(match[1]) < len(batch):
                refused = batch[int(match[1])]
                # Sent again it would be refused again and hold up every event behind it.
                log.warning("dashboard refused security event %s, dropped: %s", refused.id, error)
                self.queue.remove([refused.seq])
                self.metrics.dropped.labels("refused").inc()
                self.metrics.queue_depth.set(self.queue.depth)
                return
            raise
        self.queue.remove(event.seq for event in batch)
        self.metrics.delivered.labels("accepted").inc(answer.accepted)
        self.metrics.delivered.labels("duplicate").inc(answer.duplicates)
        self.queue.report_drops(dropped_event)
        self.metrics.queue_depth.set(self.queue.depth)

    def _batch(self) -> list[QueuedEvent]:
        return take_batch(self.queue, self._batch_limit)

    def _succeeded(self) -> None:
        self._backoff.reset()
        self.metrics.last_success.set(time.time())
        if self._failing_since is not None:
            log.info(
                "dashboard %s answers again (after %.0f s of failures)",
                self.settings.url,
                time.monotonic() - self._failing_since,
            )
            self._failing_since = None
            self._failures_unlogged = 0

    def _failed(self, error: DashboardError) -> float:
        """Count and log (rate-limited) a failure; the delay before the next request."""
        self.metrics.failures.labels(error.kind).inc()
        if error.kind in ("not_registered", "auth"):
            self.metrics.registered.set(0)
        if error.kind == "not_registered":
            with self._lock:
                self._registration_changed = True
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if (
            self._failures_unlogged == 0
            or now - self._failure_logged_at >= FAILURE_LOG_EVERY_SECONDS
        ):
            more = f" ({self._failures_unlogged} more failures)" if self._failures_unlogged else ""
            level = logging.WARNING if error.retry_helps else logging.ERROR
            log.log(level, "dashboard request failed (%s): %s%s", error.kind, error, more)
            self._failure_logged_at = now
            self._failures_unlogged = 0
        self._failures_unlogged += 1
        return self._backoff.next_delay()
