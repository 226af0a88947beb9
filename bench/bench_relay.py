"""altmesh through one and two relays (end-to-end encrypted) beside socat chains with the same
number of socket hops and OpenSSH through zero, one and two jump hosts, measured in one run:
throughput, 64-byte round trips, new stream and connection setup, and the goals they are held to.

Every path reaches the same local source server (`tests/integration/data_server.py`: `SOURCE`
sends a known stream, `ECHO` echoes):
    direct:           the source itself (round trips only)
    socat xN:         a chain of N `socat` forwarders in front of the source (no crypto: the
                      limit of the topology; 3 forwarders have the socket hops of
                      client -> relay -> service, 4 those of client -> relay -> relay -> service)
    ssh -L:           `ssh -L` through one sshd, no jump
    ssh -J xN:        `ssh -L` to a target sshd through N jump sshd (ProxyJump: `ssh -W` under
                      the session, so every jump adds a layer of encryption at the client and the
                      target's session is end to end, as in altmesh)
    altmesh 1 relay:  `altmesh up --forward` -> relay B -> `altmesh serve` -> source
    altmesh 2 relays: `altmesh up --forward` -> relay A -> relay B -> `altmesh serve` -> source
Every sshd and relay is started here on a free port with throwaway keys and stopped by PID.

The paths are set up first, then used in turns (each download of every path, then the next),
so that load from the machine's other users lands on every figure alike.

Usage: python bench/bench_relay.py [--mib 512] [--pings 3000] [--only-goals]
Exits 1 if a peer (socat, sshd/ssh, named) is missing or any path fails (not when a goal is
missed: that is printed as MISS).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "files/relay"))  # for tests.integration.helpers

from tests.integration import helpers  # noqa: E402
from tests.integration.helpers import Proc, free_port  # noqa: E402
from tests.integration.mesh_net import MeshNet  # noqa: E402

PING_SIZE = 64


@dataclass
class Path_:
    """One way to reach the source: a local port, and what it is compared as."""

    name: str
    port: int
    throughput: bool = True
    setup: Callable[[], float] | None = None  # a further setup figure (seconds)
    setup_label: str = ""
    downloads: list[float] = field(default_factory=list)
    rtts: list[float] = field(default_factory=list)
    stream_setups: list[float] = field(default_factory=list)
    total: int = 0  # bytes per download

    @property
    def rate(self) -> float:
        return self.total / min(self.downloads) / 1e6 if self.downloads else 0.0


def download(port: int, total: int) -> float:
    """Seconds to receive `total` bytes from the source behind `port`."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(f"SOURCE {total} 1\n".encode())
        started = time.perf_counter()
        received = 0
        buffer = bytearray(1 << 20)
        while received < total:
            n = sock.recv_into(buffer)
            if n == 0:
                break
            received += n
        elapsed = time.perf_counter() - started
    if received != total:
        raise RuntimeError(f"received {received} of {total} bytes through port {port}")
    return elapsed


def round_trips(port: int, count: int) -> list[float]:
    """Seconds of each of `count` 64-byte ping-pongs through the echo behind `port` (after 200
    unmeasured ones), TCP_NODELAY on the bench's socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"ECHO\n")
        ping = os.urandom(PING_SIZE)
        buffer = bytearray(PING_SIZE)
        view = memoryview(buffer)
        times = []
        for i in range(count + 200):
            started = time.perf_counter()
            sock.sendall(ping)
            received = 0
            while received < PING_SIZE:
                n = sock.recv_into(view[received:])
                if n == 0:
                    raise RuntimeError(f"echo behind port {port} closed")
                received += n
            if i >= 200:
                times.append(time.perf_counter() - started)
            if buffer != ping:
                raise RuntimeError(f"echo behind port {port} answered other bytes")
    return times


def stream_setup(port: int) -> float:
    """Seconds from connect() to one byte echoed back (a new stream each time). The echo answers
    at once; `SOURCE` would first make its 1 MiB pattern block, milliseconds of the source's own
    that are no part of any path."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"ECHO\n!")
        if sock.recv(1) != b"!":
            raise RuntimeError(f"no echo through port {port}")
    return time.perf_counter() - started


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


@contextlib.contextmanager
def processes() -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    try:
        yield procs
    finally:
        # Every one is stopped even if stopping another failed.
        for proc in reversed(procs):
            try:
                proc.stop()
            except Exception as error:
                print(f"could not stop {proc.name}: {error}", file=sys.stderr)


def start_socat_chain(workdir: Path, target: int, length: int, procs: list[Proc]) -> int:
    """`length` socat forwarders in a row in front of `target`; the first one's port."""
    for i in range(length):
        port = free_port()
        procs.append(
            Proc(
                f"socat{length}-{i}",
                [
                    "socat",
                    f"TCP-LISTEN:{port},fork,reuseaddr,bind=127.0.0.1,nodelay",
                    f"TCP:127.0.0.1:{target},nodelay",
                ],
                workdir,
            )
        )
        wait_port(port)
        target = port
    return target


class Ssh:
    """Three sshd on loopback (jump1, jump2, target) with a throwaway host key and user key,
    and an ssh_config naming every path through them."""

    def __init__(self, workdir: Path, procs: list[Proc]) -> None:
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        if not Path(sshd).exists() or not shutil.which("ssh"):
            raise RuntimeError("sshd or ssh is missing: install openssh-server/client (make host)")
        self.workdir = workdir
        self.procs = procs
        self.dir = workdir / "ssh"
        self.dir.mkdir()
        host_key, user_key = self.dir / "host_key", self.dir / "user_key"
        for key in (host_key, user_key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
        authorized = self.dir / "authorized_keys"
        authorized.write_text((self.dir / "user_key.pub").read_text())
        authorized.chmod(0o600)
        Path("/run/sshd").mkdir(exist_ok=True)
        ports = {}
        for name in ("jump1", "jump2", "target"):
            port = ports[name] = free_port()
            config = self.dir / f"sshd_{name}_config"
            config.write_text(
                f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
                f"AuthorizedKeysFile {authorized}\nPasswordAuthentication no\nUsePAM no\n"
                "StrictModes no\nPermitRootLogin prohibit-password\nAllowTcpForwarding yes\n"
                f"PidFile {self.dir / f'sshd_{name}.pid'}\n"
            )
            procs.append(Proc(f"sshd-{name}", [sshd, "-D", "-e", "-f", str(config)], workdir))
        for port in ports.values():
            wait_port(port)
        user = os.environ.get("USER") or "root"
        self.config = self.dir / "ssh_config"
        # ProxyJump runs `ssh -F <this file> -W` for each jump, so the jumps use these settings too.
        self.config.write_text(
            f"Host jump1\n  HostName 127.0.0.1\n  Port {ports['jump1']}\n"
            f"Host jump2\n  HostName 127.0.0.1\n  Port {ports['jump2']}\n  ProxyJump jump1\n"
            f"Host target0\n  HostName 127.0.0.1\n  Port {ports['target']}\n"
            f"Host target1\n  HostName 127.0.0.1\n  Port {ports['target']}\n  ProxyJump jump1\n"
            f"Host target2\n  HostName 127.0.0.1\n  Port {ports['target']}\n  ProxyJump jump2\n"
            f"Host *\n  User {user}\n  IdentityFile {user_key}\n  IdentitiesOnly yes\n"
            f"  StrictHostKeyChecking no\n  UserKnownHostsFile {self.dir / 'known_hosts'}\n"
            "  BatchMode yes\n  LogLevel ERROR\n"
        )

    def command(self, host: str, *args: str) -> list[str]:
        return ["ssh", "-F", str(self.config), *args, host]

    def forward(self, jumps: int, source_port: int) -> int:
        """`ssh -N -L` to the target through `jumps` jump hosts; the forwarded port."""
        port = free_port()
        self.procs.append(
            Proc(
                f"ssh-L{jumps}",
                self.command(f"target{jumps}", "-N", "-L", f"{port}:127.0.0.1:{source_port}"),
                self.workdir,
            )
        )
        wait_port(port)
        return port

    def connect_time(self, jumps: int) -> float:
        """Seconds of a new `ssh target true` through `jumps` jump hosts."""
        started = time.perf_counter()
        subprocess.run(
            [*self.command(f"target{jumps}"), "true"], check=True, capture_output=True, timeout=30
        )
        return time.perf_counter() - started


def start_altmesh(workdir: Path, net: MeshNet) -> tuple[int, int]:
    """Relays A and B linked, the source served as data.alt on B, a client on B (1 relay) and a
    client on A (2 relays), each forwarding a local port to data.alt; the two ports."""
    net.start_relays()
    net.wait_links_up([("a", "b")])
    net.start_service("data", "b")
    ports = []
    for name, relay_name in (("near", "b"), ("far", "a")):
        node = net.node(name)
        relay = net.relays[relay_name]
        port = free_port()
        helpers.write_client_config(
            node,
            "client",
            relay.node,
            relay.port,
            dns_port=net.named.port,
            trust_anchor=net.named.trust_anchor,
            forwards=(f"{port}:data.alt:9",),
        )
        net.spawn(name, [*helpers.ALTMESH, "up", "--config", str(node.config)])
        helpers.wait_linked(node)
        wait_port(port)
        ports.append(port)
    net.wait_routed([("a", "b")])
    return ports[0], ports[1]


def link_setup_time(relay_port: int, relay_public: bytes) -> float:
    """Median seconds of a new Noise IK link handshake with a relay (10 of them)."""
    import asyncio

    from altmesh.protocol import StaticKeyPair

    async def one() -> float:
        key = StaticKeyPair.generate()
        started = time.perf_counter()
        _conn, _first, writer = await helpers.raw_link_handshake(relay_port, key, relay_public)
        elapsed = time.perf_counter() - started
        writer.close()
        return elapsed

    return statistics.median(asyncio.run(one()) for _ in range(10))


def measure(paths: list[Path_], total: int, pings: int, rounds: int) -> None:
    """Every figure of every path, in turns: downloads, then round trips, then new streams."""
    for path in paths:
        path.total = total
        if path.throughput:
            download(path.port, 16 << 20)  # warm up
    for _ in range(rounds):
        for path in paths:
            if path.throughput:
                path.downloads.append(download(path.port, total))
    for _ in range(3):
        for path in paths:
            path.rtts += round_trips(path.port, pings // 3)
    for _ in range(4):
        for path in paths:
            path.stream_setups += [stream_setup(path.port) for _ in range(5)]


def stop_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    # bench/run.sh stops a benchmark with SIGTERM: unwind so every process is stopped by PID.
    print("bench_relay: stopped by SIGTERM, stopping its processes", file=sys.stderr)
    raise SystemExit(143)


def goal(ok: bool, text: str) -> str:
    return f"  {'PASS' if ok else 'MISS'}  {text}"


def report(by: dict[str, Path_], mib: int, rounds: int) -> None:
    print(
        f"download of {mib} MiB (best of {rounds}, in turns); 64-byte round trip (median,"
        " 10th-90th percentile); new stream: connect to a byte echoed back (median of 20)"
    )
    print(f"  {'path':<44} {'MB/s':>8} {'RTT us':>8} {'(p10-p90)':>13} {'new stream':>11}")
    for path in by.values():
        rtt = sorted(path.rtts)
        p10, p90 = rtt[len(rtt) // 10], rtt[len(rtt) * 9 // 10]
        rate = f"{path.rate:8.1f}" if path.throughput else f"{'-':>8}"
        setup = (
            f"{statistics.median(path.stream_setups) * 1000:8.2f} ms"
            if path.stream_setups
            else f"{'-':>11}"
        )
        print(
            f"  {path.name:<44} {rate} {statistics.median(rtt) * 1e6:8.0f}"
            f" {f'({p10 * 1e6:.0f}-{p90 * 1e6:.0f})':>13} {setup}",
            flush=True,
        )
    for path in by.values():
        if path.setup is not None:
            print(f"  setup, {path.name}: {path.setup() * 1000:.1f} ms ({path.setup_label})")

    def rtt(name: str) -> float:
        return statistics.median(by[name].rtts) * 1e6

    one, two = by["altmesh 1 relay"], by["altmesh 2 relays"]
    ssh2, socat4 = by["ssh -J x2 (two jump hosts)"], by["socat x4 (hops of 2 relays)"]
    print("goals:")
    print(
        goal(
            two.rate >= 1.3 * ssh2.rate and two.rate >= 0.6 * socat4.rate,
            f"2-relay throughput {two.rate:.1f} MB/s: {two.rate / ssh2.rate:.2f}x ssh through two"
            f" jumps (goal >= 1.3x), {two.rate / socat4.rate:.0%} of the socat chain of 4"
            " (goal >= 60%)",
        )
    )
    ssh1 = rtt("ssh -J x1 (one jump host)")
    print(
        goal(
            rtt("altmesh 1 relay") <= ssh1,
            f"1-relay round trip {rtt('altmesh 1 relay'):.0f} us <= ssh through one jump's"
            f" {ssh1:.0f} us",
        )
    )
    added = rtt("altmesh 2 relays") - rtt("altmesh 1 relay")
    print(goal(added <= 60, f"round trip added by the second relay {added:.0f} us (goal <= 60)"))
    setup2 = statistics.median(two.stream_setups) * 1000
    print(goal(setup2 <= 3, f"new stream over 2 relays {setup2:.2f} ms (goal <= 3 ms)"))
    ssh_1, socat3 = by["ssh -J x1 (one jump host)"], by["socat x3 (hops of 1 relay)"]
    print("ratios (altmesh over its peers):")
    print(
        f"  throughput: 1 relay {one.rate / ssh_1.rate:.2f}x ssh through one jump,"
        f" {one.rate / socat3.rate:.0%} of socat x3; 2 relays {two.rate / ssh2.rate:.2f}x ssh"
        f" through two jumps, {two.rate / socat4.rate:.0%} of socat x4"
    )
    print(
        f"  round trip: 1 relay {rtt('altmesh 1 relay') / ssh1:.2f}x ssh through one jump;"
        f" 2 relays {rtt('altmesh 2 relays') / rtt('ssh -J x2 (two jump hosts)'):.2f}x ssh"
        " through two jumps"
    )
    print(
        f"  added by one more hop: altmesh relay {added:.0f} us, ssh jump"
        f" {rtt('ssh -J x2 (two jump hosts)') - ssh1:.0f} us, socat forwarder"
        f" {rtt('socat x4 (hops of 2 relays)') - rtt('socat x3 (hops of 1 relay)'):.0f} us"
    )


def main() -> int:
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=512, help="MiB per timed download")
    parser.add_argument("--pings", type=int, default=3000, help="round trips per path")
    parser.add_argument("--rounds", type=int, default=2, help="timed downloads per path")
    args = parser.parse_args()
    if not shutil.which("socat"):
        raise RuntimeError("socat is missing: install it (make host)")
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="altmesh-bench-")))
        procs = stack.enter_context(processes())
        (workdir / "mesh").mkdir()
        net = stack.enter_context(
            MeshNet(workdir / "mesh", ["a", "b"], [("a", "b")], services=["data"], capture=False)
        )
        source = net.data_port
        ssh = Ssh(workdir, procs)
        altmesh_near, altmesh_far = start_altmesh(workdir, net)
        relay_b = net.relays["b"]
        paths = [
            Path_("direct (the source itself)", source, throughput=False),
            Path_("socat x1", start_socat_chain(workdir, source, 1, procs)),
            Path_("socat x3 (hops of 1 relay)", start_socat_chain(workdir, source, 3, procs)),
            Path_("socat x4 (hops of 2 relays)", start_socat_chain(workdir, source, 4, procs)),
            Path_(
                "ssh -L (no jump)",
                ssh.forward(0, source),
                setup=lambda: ssh.connect_time(0),
                setup_label="new ssh connection: ssh host true",
            ),
            Path_(
                "ssh -J x1 (one jump host)",
                ssh.forward(1, source),
                setup=lambda: ssh.connect_time(1),
                setup_label="new ssh connection through one jump",
            ),
            Path_(
                "ssh -J x2 (two jump hosts)",
                ssh.forward(2, source),
                setup=lambda: ssh.connect_time(2),
                setup_label="new ssh connection through two jumps",
            ),
            Path_(
                "altmesh 1 relay",
                altmesh_near,
                setup=lambda: link_setup_time(relay_b.port, relay_b.node.public),
                setup_label="new link: Noise IK handshake with the relay",
            ),
            Path_("altmesh 2 relays", altmesh_far),
        ]
        print(f"paths to one source, {os.cpu_count()} CPUs shared by every process of every path")
        measure(paths, args.mib << 20, args.pings, args.rounds)
        report({path.name: path for path in paths}, args.mib, args.rounds)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        print("bench_relay: FAILED (see above)", file=sys.stderr)
        sys.exit(1)
