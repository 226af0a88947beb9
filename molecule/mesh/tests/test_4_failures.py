"""Failures injected into the running network (after test_3_link_cut.py healed its cuts):

- the dashboard stopped for a while and started again while relays heartbeat and security events
  are being made: every event each relay logged is stored by the dashboard exactly once;
- the DNS primary's named stopped: the client resolves through the resolver, which now has
  only the secondary to ask (its cache flushed), DNSSEC-validated, and new streams succeed;
- the client's relay container killed (SIGKILL: no drain) while streams run: new streams
  succeed within 3 s, through the other relay the client can reach (found by DNS-SD), and no
  stream that returned an answer returned a truncated one.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import time
import tomllib
from collections.abc import Callable
from typing import Any

import pytest
from meshhosts import (
    ALTMESH,
    NODE_CONFIG,
    NS1,
    NS2,
    PAGE_TEXT,
    RELAY1,
    RELAY_HOSTS,
    RESOLVER,
    SERVICE,
    USER,
    WEB,
    attached_relay,
    eventually,
    mesh_links_up,
    network_addresses,
    node_status,
    podman,
    podman_host,
    quote,
    start_with_addresses,
)
from testinfra.host import Host

DASHBOARD_UNIT = "altmesh-dashboard.service"
DASHBOARD_DB = "/var/lib/altmesh-dashboard/dashboard.sqlite3"
EVENTS_FILE = "/var/log/altmesh/relay-events.jsonl"
METRICS = "curl -sf --max-time 5 http://127.0.0.1:9400/metrics"
OUTAGE_SECONDS = 12.0
NEW_STREAM_GOAL_SECONDS = 3.0

# On a host with a relay's address: make security events on that relay for `seconds` (TCP
# connections that send bytes that are no handshake: handshake_failed, aggregated per source).
JUNK = r"""
import os, socket, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(os.urandom(200))
            sock.settimeout(1)
            try:
                sock.recv(100)
            except OSError:
                pass
    except OSError:
        pass
    time.sleep(0.2)
"""

# On the client host: 3 workers open streams to the service through SOCKS5 for `seconds`, each
# a GET / whose answer must be complete (its Content-Length), and write what happened as JSON.
STREAMS = r"""
import json, socket, sys, threading, time
name, seconds, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
results, lock = [], threading.Lock()
def exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError(f"closed after {len(data)} of {size} bytes of the SOCKS5 reply")
        data += chunk
    return data
def attempt():
    started, error, ok = time.time(), "", False
    try:
        with socket.create_connection(("127.0.0.1", 1080), timeout=2) as sock:
            sock.settimeout(2)
            sock.sendall(b"\x05\x01\x00")
            if sock.recv(2) != b"\x05\x00":
                raise OSError("SOCKS5 refused")
            sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name.encode() + b"\x00\x50")
            reply = exactly(sock, 4)  # VER REP RSV ATYP, then the bound address and port
            if reply[1] != 0:
                raise OSError(f"SOCKS5 reply {reply[1]}")
            size = {1: 4, 4: 16}.get(reply[3]) or exactly(sock, 1)[0]
            exactly(sock, size + 2)
            sock.sendall(b"GET / HTTP/1.0\r\nHost: " + name.encode() + b"\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:")]
        if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0]:
            raise OSError("no HTTP 200")
        if not length or len(body) != length[0]:
            error = f"truncated: {len(body)} of {length} bytes"
        else:
            ok = True
    except OSError as exc:
        error = str(exc) or type(exc).__name__
    with lock:
        results.append({"start": started, "end": time.time(), "ok": ok, "error": error})
def worker(offset):
    time.sleep(offset)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        attempt()
        time.sleep(0.1)
threads = [threading.Thread(target=worker, args=(i * 0.1,)) for i in range(3)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with open(out, "w") as handle:
    json.dump(results, handle)
"""


def _utc(text: str) -> dt.datetime:
    """A time as the relay logs it (RFC 3339, zone) or as the dashboard stores it (naive UTC)."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def relay_logged(name: str) -> collections.Counter[tuple[str, dt.datetime]]:
    """Every security event relay `name` logged: (kind, time) -> how many."""
    text = podman_host(RELAY_HOSTS[name]).file(EVENTS_FILE).content_string
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    return collections.Counter((r["event"], _utc(r["time"])) for r in records)


STORED = r"""
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
rows = db.execute(
    "SELECT r.name, e.kind, e.occurred_at, e.event_id FROM security_events e"
    " JOIN relays r ON r.id = e.relay_id").fetchall()
print(json.dumps(rows))
"""


def dashboard_stored() -> list[tuple[str, str, str, str]]:
    """Every security event the dashboard stored: (relay, kind, time, event id)."""
    out = podman_host(NS1).check_output(f"python3 -c {quote(STORED)} {DASHBOARD_DB}")
    return [tuple(row) for row in json.loads(out)]


def metric(host: Host, name: str) -> float:
    for line in host.check_output(METRICS).splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


def relay_endpoint(name: str, network_suffix: str) -> str:
    """The address of relay `name` on the network whose name starts with mesh-<suffix>-."""
    for network, address in network_addresses(RELAY_HOSTS[name]).items():
        if network.startswith(f"mesh-{network_suffix}-"):
            return address
    raise AssertionError(f"{name} is on no network mesh-{network_suffix}-*")


def test_the_dashboard_stopped_and_started_during_heartbeats_loses_and_duplicates_no_event(
    figures: dict[str, str],
) -> None:
    ns1, user = podman_host(NS1), podman_host(USER)
    relays = {name: podman_host(host) for name, host in RELAY_HOSTS.items()}
    junk_seconds = OUTAGE_SECONDS + 8
    relay1_address = relay_endpoint("relay1", "a")
    started = user.run(
        f"nohup python3 -c {quote(JUNK)} {relay1_address} 7400 {junk_seconds} >/dev/null 2>&1 &"
    )
    assert started.rc == 0, started.stderr
    time.sleep(2)
    stopped_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    ns1.check_output(f"systemctl stop {DASHBOARD_UNIT}")
    try:
        time.sleep(OUTAGE_SECONDS)
        # Events made while the dashboard is down wait on the relay's disk.
        assert metric(relays["relay1"], "altmesh_reporting_queue_events") > 0
    finally:
        ns1.check_output(f"systemctl start {DASHBOARD_UNIT}")
    started_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    restarted = time.monotonic()
    time.sleep(junk_seconds - OUTAGE_SECONDS)  # the junk ends

    def delivered() -> bool:
        return all(metric(host, "altmesh_reporting_queue_events") == 0 for host in relays.values())

    assert eventually(delivered, seconds=90, every=1.0), "events still queued on a relay"
    drained = time.monotonic() - restarted
    stored = dashboard_stored()
    ids = collections.Counter((relay, event_id) for relay, _k, _t, event_id in stored)
    assert [key for key, count in ids.items() if count > 1] == []
    during = 0
    for name in RELAY_HOSTS:
        logged = relay_logged(name)
        held = collections.Counter(
            (kind, _utc(at)) for relay, kind, at, _id in stored if relay == name
        )
        missing, extra = logged - held, held - logged
        assert not missing and not extra, (name, dict(missing), dict(extra))
        during += sum(n for (_k, at), n in logged.items() if stopped_at <= at <= started_at)
        assert metric(relays[name], "altmesh_reporting_events_dropped_total") == 0
    assert during > 0, "no security event was made while the dashboard was down"
    figures["dashboard down 12 s: events made meanwhile, all stored once"] = str(during)
    figures["dashboard started again: every relay's queue delivered after (s)"] = f"{drained:.1f}"


def test_with_the_dns_primary_stopped_clients_resolve_through_the_resolver_and_secondary(
    figures: dict[str, str],
) -> None:
    ns1, ns2, resolver, user = (podman_host(h) for h in (NS1, NS2, RESOLVER, USER))
    web_card = json.loads(podman_host(WEB).file("/etc/altmesh/node-card.json").content_string)
    config = tomllib.loads(user.file(NODE_CONFIG).content_string)
    resolver_address = resolver.check_output("ip -4 -o addr show dev ctl0").split()[3]
    # the client asks the resolver (split DNS), not the authoritative servers
    assert [s.rsplit(":", 1)[0] for s in config["dns"]["servers"]] == [
        resolver_address.split("/")[0]
    ]
    ns1.check_output("systemctl stop named")
    try:
        assert ns1.run("dig +time=1 +tries=1 @127.0.0.1 alt SOA").rc != 0  # really down
        resolver.check_output("rndc flush")  # nothing answered from the cache
        started = time.monotonic()
        out = user.check_output(f"{ALTMESH} resolve {SERVICE} --config {NODE_CONFIG}")
        resolved = time.monotonic() - started
        assert out.split()[:3] == [SERVICE, web_card["address"], web_card["public_key"]], out
        assert "(DNSSEC validated)" in out
        # the answer came from the secondary: it serves the zone, signed
        soa = ns2.check_output("dig +dnssec +norecurse @127.0.0.1 alt SOA")
        assert "status: NOERROR" in soa and " aa" in soa.split("flags:", 1)[1].split(";", 1)[0]
        assert "\tRRSIG\tSOA " in soa, soa
        fetched = user.run(
            f"curl -sS --fail --max-time 30 --socks5-hostname 127.0.0.1:1080 http://{SERVICE}/"
        )
        assert fetched.rc == 0 and PAGE_TEXT in fetched.stdout, fetched.stderr
    finally:
        ns1.check_output("systemctl start named")
    figures["DNS primary stopped, resolver cache flushed: resolved via the secondary in (s)"] = (
        f"{resolved:.2f}"
    )
    assert eventually(lambda: ns1.run("dig +time=1 +tries=1 @127.0.0.1 alt SOA").rc == 0)


def streams_while(
    user: Host, inject: Callable[[], None], label: str, figures: dict[str, str]
) -> float:
    """Open streams from the client to the service for 25 s, `inject` a failure 5 s in, and
    check what happened: every stream before it succeeded, none returned a truncated answer, and
    every stream started NEW_STREAM_GOAL_SECONDS or more after the failure succeeded (streams
    started earlier may fail: the client has to notice the failure first). Returns how long
    after the failure the last failing stream was started (0 if none failed)."""
    seconds, out = 25.0, "/tmp/altmesh-failure-streams.json"
    user.check_output(f"rm -f {out}")
    running = user.run(
        f"nohup python3 -c {quote(STREAMS)} {SERVICE} {seconds} {out} >/dev/null 2>&1 &"
    )
    assert running.rc == 0, running.stderr
    time.sleep(5)
    injected_at = time.time()
    inject()
    assert eventually(lambda: user.file(out).exists, seconds=seconds + 20)
    time.sleep(0.5)  # written at once, but let the file be complete
    results: list[dict[str, Any]] = json.loads(user.file(out).content_string)
    before = [r for r in results if r["end"] < injected_at]
    assert before and all(r["ok"] for r in before), before
    assert [r for r in results if r["error"].startswith("truncated")] == []
    after = sorted((r for r in results if r["start"] >= injected_at), key=lambda r: r["start"])
    failed = [r for r in after if not r["ok"]]
    failing_for = max((r["start"] - injected_at for r in failed), default=0.0)
    late = [r for r in after if r["start"] >= injected_at + NEW_STREAM_GOAL_SECONDS]
    figures[f"{label}: the last new stream that failed was started after (s)"] = (
        f"{failing_for:.2f}"
    )
    figures[f"{label}: new streams that failed"] = (
        f"{len(failed)} of {len(after)} ({sorted({r['error'] for r in failed})})"
    )
    assert late and all(r["ok"] for r in late), [r for r in late if not r["ok"]][:10]
    return float(failing_for)


def wait_for_full_mesh() -> None:
    for host in RELAY_HOSTS.values():
        relay = podman_host(host)
        assert eventually(lambda r=relay: len(mesh_links_up(r)) == 2, seconds=180), host


def standby(user: Host, relay: str) -> bool:
    """The client knows `relay` and its last probe of it was answered: a relay to move to."""
    rows = [row for row in node_status(user)["candidates"] if row["name"] == relay]
    return bool(rows) and rows[0]["state"] == "standby"


def test_a_killed_relay_of_the_client_leaves_new_streams_failing_for_at_most_3_s(
    figures: dict[str, str],
) -> None:
    user = podman_host(USER)
    assert attached_relay(user) == "relay1"
    # relay3, added by test_2, reaches the client by DNS-SD (read every 60 s) and its probes
    assert eventually(lambda: standby(user, "relay3"), seconds=150), node_status(user)
    addresses = network_addresses(RELAY1)
    try:
        streams_while(
            user,
            lambda: podman("kill", "--signal", "KILL", RELAY1),
            "relay1 (the client's) killed",
            figures,
        )
        # relay2 has no address on the client's networks: relay3 is the one left
        assert attached_relay(user) == "relay3"
    finally:
        start_with_addresses(RELAY1, addresses)
    wait_for_full_mesh()


@pytest.fixture(autouse=True)
def _network_whole_before_each() -> None:
    """Each failure starts from a healed network: every relay linked to the other two."""
    wait_for_full_mesh()
