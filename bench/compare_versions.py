"""Two versions of altmesh side by side in one run: the relay paths of bench_relay.py (a client on
relay B, one on relay A, the service on B), one mesh per version, measured in alternating turns
so that load from the machine's other users lands on both alike.

Each version's processes (relays, service, clients, data server) run with its own PYTHONPATH:

    python bench/compare_versions.py --old /path/to/old/files/relay/src \\
        --new files/relay/src [--turns 4] [--pings 1000] [--streams 5]

Per turn and version: 64-byte round trips through 1 and 2 relays (median), the relays' CPU time
per round trip (`/proc/PID/stat`, utime + stime), and new streams (connect to one byte echoed
back). Each turn runs the old version first, then the new one, then the next turn the other way
round. Prints every turn and the medians over the turns.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_relay  # noqa: E402
from bench_relay import round_trips, stream_setup  # noqa: E402
from tests.integration.mesh_net import MeshNet  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


@dataclass
class Version:
    label: str
    pythonpath: str
    net: MeshNet | None = None
    near: int = 0  # local port of the client on B (1 relay)
    far: int = 0  # local port of the client on A (2 relays)
    rtt1: list[float] = field(default_factory=list)  # medians per turn, seconds
    rtt2: list[float] = field(default_factory=list)
    cpu1: list[float] = field(default_factory=list)  # relay CPU per round trip, seconds
    cpu2: list[float] = field(default_factory=list)
    new1: list[float] = field(default_factory=list)
    new2: list[float] = field(default_factory=list)


@contextlib.contextmanager
def pythonpath(value: str) -> Iterator[None]:
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


def relay_pids(version: Version, names: list[str]) -> list[int]:
    assert version.net is not None
    return [version.net.relays[name].pid for name in names]


def measure_rtt(port: int, pids: list[int], pings: int) -> tuple[float, float]:
    before = sum(cpu_seconds(pid) for pid in pids)
    times = round_trips(port, pings)
    after = sum(cpu_seconds(pid) for pid in pids)
    return statistics.median(times), (after - before) / (pings + 200)


def turn(version: Version, pings: int, streams: int) -> None:
    rtt, cpu = measure_rtt(version.near, relay_pids(version, ["b"]), pings)
    version.rtt1.append(rtt)
    version.cpu1.append(cpu)
    rtt, cpu = measure_rtt(version.far, relay_pids(version, ["a", "b"]), pings)
    version.rtt2.append(rtt)
    version.cpu2.append(cpu)
    version.new1.append(statistics.median(stream_setup(version.near) for _ in range(streams)))
    version.new2.append(statistics.median(stream_setup(version.far) for _ in range(streams)))


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--old", required=True, help="PYTHONPATH of the old version")
    parser.add_argument("--new", required=True, help="PYTHONPATH of the new version")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--pings", type=int, default=1000, help="round trips per path and turn")
    parser.add_argument("--streams", type=int, default=5, help="new streams per path and turn")
    args = parser.parse_args()
    versions = [
        Version("old", str(Path(args.old).resolve())),
        Version("new", str(Path(args.new).resolve())),
    ]
    print(f"compare: load average {load()} at the start", flush=True)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="altmesh-cmp-")))
        for version in versions:
            (workdir / version.label).mkdir()
            with pythonpath(version.pythonpath):
                version.net = stack.enter_context(
                    MeshNet(
                        workdir / version.label,
                        ["a", "b"],
                        [("a", "b")],
                        services=["data"],
                        capture=False,
                    )
                )
                version.near, version.far = bench_relay.start_altmesh(workdir, version.net)
        for version in versions:  # warm up
            round_trips(version.near, 200)
            round_trips(version.far, 200)
        for index in range(args.turns):
            order = versions if index % 2 == 0 else versions[::-1]
            for version in order:
                turn(version, args.pings, args.streams)
                print(
                    f"turn {index + 1} {version.label}: round trip 1 relay"
                    f" {version.rtt1[-1] * 1e6:.0f} us (relay CPU {version.cpu1[-1] * 1e6:.0f}"
                    f" us), 2 relays {version.rtt2[-1] * 1e6:.0f} us (relays' CPU"
                    f" {version.cpu2[-1] * 1e6:.0f} us); new stream 1 relay"
                    f" {version.new1[-1] * 1e3:.2f} ms, 2 relays {version.new2[-1] * 1e3:.2f} ms"
                    f" (load {load()})",
                    flush=True,
                )
        print("medians over the turns:")
        print(
            f"  {'version':<8} {'RTT 1 relay':>12} {'RTT 2 relays':>13} {'added':>7}"
            f" {'CPU 1 relay':>12} {'CPU 2 relays':>13} {'new 1 relay':>12} {'new 2 relays':>13}"
        )
        for version in versions:
            rtt1 = statistics.median(version.rtt1) * 1e6
            rtt2 = statistics.median(version.rtt2) * 1e6
            print(
                f"  {version.label:<8} {rtt1:9.0f} us {rtt2:10.0f} us {rtt2 - rtt1:4.0f} us"
                f" {statistics.median(version.cpu1) * 1e6:9.0f} us"
                f" {statistics.median(version.cpu2) * 1e6:10.0f} us"
                f" {statistics.median(version.new1) * 1e3:9.2f} ms"
                f" {statistics.median(version.new2) * 1e3:10.2f} ms"
            )
    print(f"compare: load average {load()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
