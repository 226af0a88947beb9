"""One-hop transfer through altmesh (client -> relay -> service, end-to-end encrypted) beside a
plain socat forwarder and an OpenSSH tunnel (-L through sshd on loopback), measured in one run;
plus connection setup times.

Every path downloads the same stream from the same local source server:
    altmesh:  127.0.0.1:FWD (altmesh up --forward) -> relay -> altmesh serve -> source
    socat:    socat TCP-LISTEN -> source
    ssh:      ssh -L (one hop through sshd on 127.0.0.1, throwaway host and user keys) -> source

The three paths are set up first, then downloaded in turns (socat, ssh, altmesh, socat, ...),
so that load from the machine's other users lands on every figure alike.

Usage: python bench/bench_relay.py [--mib 512]
Exits 1 if a peer (socat, sshd/ssh, named) is missing or any path fails; every process it starts
is stopped by PID, also on failure or SIGTERM.
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
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "files/relay"))  # for tests.integration.helpers

from tests.integration import helpers  # noqa: E402
from tests.integration.helpers import ALTMESH, PYTHON, RELAY, Node, Proc, free_port  # noqa: E402

DATA_SERVER = ROOT / "files/relay/tests/integration/data_server.py"


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


def setup_time(port: int) -> float:
    """Seconds from connect() to the first byte of a tiny answer (new stream each time)."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"SOURCE 1 1\n")
        if not sock.recv(1):
            raise RuntimeError("no answer")
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


def start_altmesh(workdir: Path, source_port: int, procs: list[Proc]) -> tuple[int, Node, int]:
    relay, data, client = (Node(n, workdir) for n in ("relay", "data", "client"))
    relay_port, metrics_port, forward_port = free_port(), free_port(), free_port()
    helpers.write_relay_config(relay, relay_port, metrics_port)
    helpers.write_client_config(
        data, "service", relay, relay_port, service=("data.alt", f"127.0.0.1:{source_port}")
    )
    procs.append(Proc("relay", [*RELAY, "--config", str(relay.config)], workdir))
    procs[-1].wait_for_output("altmesh-relay ready")
    procs.append(
        Proc("data", [*ALTMESH, "serve", "data.alt", "--config", str(data.config)], workdir)
    )
    helpers.wait_linked(data)
    # The client reaches data.alt by a DNSSEC-validated name: a real named serves alt.
    from altmesh.protocol import network_prefix, node_address
    from altmesh.testing.named import NamedServer

    address = node_address(network_prefix(helpers.PREFIX), data.public)
    named = NamedServer.start(
        workdir / "named",
        records=[
            f"data 300 IN AAAA {address}",
            f'data 300 IN TXT "altmesh-key={data.public_b64}"',
        ],
    )
    procs.append(_NamedProc(named))  # type: ignore[arg-type]
    helpers.write_client_config(
        client,
        "client",
        relay,
        relay_port,
        dns_port=named.port,
        trust_anchor=named.trust_anchor,
        forwards=(f"{forward_port}:data.alt:9",),
    )
    procs.append(Proc("client", [*ALTMESH, "up", "--config", str(client.config)], workdir))
    helpers.wait_linked(client)
    wait_port(forward_port)
    return forward_port, relay, relay_port


class _NamedProc:
    """Lets a NamedServer sit in the process list (stopped by PID like the others)."""

    def __init__(self, named: object) -> None:
        self.name = "named"
        self.named = named

    def stop(self) -> int:
        self.named.stop()  # type: ignore[attr-defined]
        return 0


def start_ssh(workdir: Path, source_port: int, procs: list[Proc]) -> tuple[int, list[str]]:
    """sshd on loopback and an `ssh -N -L` through it; returns the forwarded port and the command
    that opens one new ssh connection (for the connection setup figure)."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists() or not shutil.which("ssh"):
        raise RuntimeError("sshd or ssh is missing: install openssh-server/client (make host)")
    ssh_dir = workdir / "ssh"
    ssh_dir.mkdir()
    host_key, user_key = ssh_dir / "host_key", ssh_dir / "user_key"
    for key in (host_key, user_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text((ssh_dir / "user_key.pub").read_text())
    authorized.chmod(0o600)
    port = free_port()
    config = ssh_dir / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized}\nPasswordAuthentication no\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\nAllowTcpForwarding yes\n"
        f"PidFile {ssh_dir / 'sshd.pid'}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    procs.append(Proc("sshd", [sshd, "-D", "-e", "-f", str(config)], workdir))
    wait_port(port)
    user = os.environ.get("USER") or "root"
    forward = free_port()
    base = [
        "ssh",
        "-i",
        str(user_key),
        "-p",
        str(port),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        f"UserKnownHostsFile={ssh_dir / 'known_hosts'}",
        "-o",
        "BatchMode=yes",
    ]
    procs.append(
        Proc(
            "ssh",
            [*base, "-N", "-L", f"{forward}:127.0.0.1:{source_port}", f"{user}@127.0.0.1"],
            workdir,
        )
    )
    wait_port(forward)
    return forward, [*base, f"{user}@127.0.0.1", "true"]


def measure(
    paths: list[tuple[str, int, Callable[[], float] | None, str]], total: int
) -> list[tuple[str, float, str]]:
    """Download through every path in turns (best of 2), then time connection setups."""
    for _name, port, _extra, _label in paths:
        download(port, 16 << 20)  # warm up
    runs: dict[str, list[float]] = {name: [] for name, *_ in paths}
    for _ in range(2):
        for name, port, _extra, _label in paths:
            runs[name].append(download(port, total))
    rows = []
    for name, port, extra_setup, extra_label in paths:
        setups = [setup_time(port) for _ in range(20)]
        setup = f"{statistics.median(setups) * 1000:.2f} ms (new stream)"
        if extra_setup is not None:
            setup += f"; {extra_setup() * 1000:.1f} ms ({extra_label})"
        rows.append((name, total / min(runs[name]) / 1e6, setup))
    return rows


def stop_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    # bench/run.sh stops a benchmark with SIGTERM: unwind so every process is stopped by PID.
    print("bench_relay: stopped by SIGTERM, stopping its processes", file=sys.stderr)
    raise SystemExit(143)


def main() -> int:
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=512, help="MiB per timed download")
    args = parser.parse_args()
    total = args.mib << 20
    if not shutil.which("socat"):
        raise RuntimeError("socat is missing: install it (make host)")
    with tempfile.TemporaryDirectory(prefix="altmesh-bench-") as tmp, processes() as procs:
        workdir = Path(tmp)
        source_port = free_port()
        procs.append(Proc("source", [PYTHON, str(DATA_SERVER), str(source_port)], workdir))
        procs[-1].wait_for_output("ready")

        socat_port = free_port()
        procs.append(
            Proc(
                "socat",
                [
                    "socat",
                    f"TCP-LISTEN:{socat_port},fork,reuseaddr,bind=127.0.0.1",
                    f"TCP:127.0.0.1:{source_port}",
                ],
                workdir,
            )
        )
        wait_port(socat_port)

        ssh_port, ssh_command = start_ssh(workdir, source_port, procs)

        def ssh_connect() -> float:
            started = time.perf_counter()
            subprocess.run(ssh_command, check=True, capture_output=True, timeout=30)
            return time.perf_counter() - started

        altmesh_port, relay, relay_port = start_altmesh(workdir, source_port, procs)

        def link_setup() -> float:
            import asyncio

            from altmesh.protocol import StaticKeyPair

            async def one() -> float:
                key = StaticKeyPair.generate()
                started = time.perf_counter()
                _conn, _first, writer = await helpers.raw_link_handshake(
                    relay_port, key, relay.public
                )
                elapsed = time.perf_counter() - started
                writer.close()
                return elapsed

            return statistics.median(asyncio.run(one()) for _ in range(10))

        print(
            f"one-hop download of {args.mib} MiB through each path (best of 2, in turns),"
            f" {os.cpu_count()} CPUs shared by all the processes of the path"
        )
        rows = measure(
            [
                ("socat plain forwarder (no crypto)", socat_port, None, ""),
                (
                    "ssh -L, one hop (default cipher)",
                    ssh_port,
                    ssh_connect,
                    "new ssh connection: ssh host true",
                ),
                (
                    "altmesh client->relay->service (e2e)",
                    altmesh_port,
                    link_setup,
                    "new link: Noise IK handshake with the relay",
                ),
            ],
            total,
        )
        for name, rate, setup in rows:
            print(f"  {name:<40} {rate:8.1f} MB/s   setup {setup}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        print("bench_relay: FAILED (see above)", file=sys.stderr)
        sys.exit(1)
