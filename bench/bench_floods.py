"""A legitimate 20 MiB transfer through a real relay, unloaded and during each flood of tiny
records from another authenticated link, printed side by side. The goal: within 3x the unloaded
time during every flood.

    source link --stream--> altmesh-relay --stream--> sink link        (the transfer)
    flooder link(s) ==tiny records==> altmesh-relay                     (the flood)

Floods (tests/integration/raw_peers.py): PING records, unsolicited PONGs, WINDOW records for a
reset stream (each closes the flooder's link with control_flood; it reconnects at once), and
1-byte DATA records within every stream's credit towards the flooder's own sink (no protocol
fault: the link's work budget is what keeps it in its share). Also printed: the relay's CPU use
during each.

Usage: python bench/bench_floods.py [--mib 20] [--runs 3]
Exits 1 if a transfer fails or takes more than 3x its unloaded time; every process it starts is
stopped by PID, also on failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "files/relay"))  # for tests.integration

from tests.integration import helpers, raw_peers  # noqa: E402
from tests.integration.helpers import RELAY, Node, Proc, free_port  # noqa: E402

LIMIT = 3.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_transfer(port: int, relay: Node, total: int) -> raw_peers.TransferResult:
    return asyncio.run(raw_peers.transfer(port, relay.public, total))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    total = args.mib * 2**20
    with tempfile.TemporaryDirectory(prefix="bench-floods-") as tmp:
        workdir = Path(tmp)
        relay = Node("relay", workdir)
        port, metrics_port = free_port(), free_port()
        helpers.write_relay_config(relay, port, metrics_port)
        proc = Proc("relay", [*RELAY, "--config", str(relay.config)], workdir)

        def stop(_signum: int, _frame: FrameType | None) -> None:
            proc.stop()
            sys.exit(143)

        signal.signal(signal.SIGTERM, stop)
        try:
            proc.wait_for_output("altmesh-relay ready")
            return run(port, relay, proc.pid, total, args.runs)
        finally:
            proc.stop()


def run(port: int, relay: Node, pid: int, total: int, runs: int) -> int:
    def measure() -> tuple[float, float, float]:
        seconds, firsts = [], []
        cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
        for _ in range(runs):
            result = timed_transfer(port, relay, total)
            seconds.append(result.total)
            firsts.append(result.first_byte)
        cpu = (cpu_seconds(pid) - cpu_before) / (time.perf_counter() - wall_before)
        return statistics.median(seconds), statistics.median(firsts), cpu

    baseline, baseline_first, baseline_cpu = measure()
    mib = total / 2**20
    print(f"{mib:.0f} MiB transfer through the relay, median of {runs}; relay CPU while measuring")
    print(f"  {'flood':<26} {'transfer':>9} {'x unloaded':>10} {'1st byte':>9} {'relay CPU':>9}")
    print(
        f"  {'(none)':<26} {baseline:8.2f}s {1.0:9.2f}x {baseline_first * 1000:7.0f}ms "
        f"{baseline_cpu * 100:8.0f}%"
    )
    over = []
    floods: list[tuple[str, raw_peers.Flooder]] = [
        (name, raw_peers.Flooder(port, relay.public, make=make))
        for name, make in sorted(raw_peers.FLOODS.items())
    ] + [
        (name, raw_peers.Flooder(port, relay.public, make_with_sink=make))
        for name, make in sorted(raw_peers.SINK_FLOODS.items())
    ]
    for name, flooder in floods:
        with flooder:
            deadline = time.monotonic() + 10
            while flooder.sent == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            seconds, first, cpu = measure()
        ratio = seconds / baseline
        verdict = "" if ratio <= LIMIT else f"  OVER {LIMIT:g}x"
        if ratio > LIMIT:
            over.append(name)
        print(
            f"  {name:<26} {seconds:8.2f}s {ratio:9.2f}x {first * 1000:7.0f}ms "
            f"{cpu * 100:8.0f}%  (flooder: {flooder.sent / 2**20:.0f} MiB on "
            f"{flooder.links} links){verdict}"
        )
    if over:
        print(f"bench_floods: over {LIMIT:g}x the unloaded time during: {', '.join(over)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
