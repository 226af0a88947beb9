#!/usr/bin/env python3
"""`make soak`: a bounded stability run of the mesh, with real relay processes on loopback.

A ring of four relays (a - b - c - d - a), the service `data.alt` attached to c and a client
(`altmesh up`, SOCKS5) attached to a, so every stream crosses the mesh over b or over d. For the
whole run (SOAK_MINUTES, default 10):

- workers open stream after stream through the client's SOCKS5 (echo streams of 1 KiB - 4 MiB,
  random bytes, each checked byte for byte), closing each when it is done;
- every link rekeys every few seconds (and after a few thousand messages), so streams cross
  rekeys all the time;
- every minute one relay of the path (b, then d, then b, ...) is restarted (SIGTERM, then started
  again), and the run records how long until it is linked again.

The report (printed, and written as report.json with rss.png beside it) gives the bytes sent
against the bytes received, how many streams failed and why (split into those that ran while a
relay restarted and those that did not), each relay's RSS over time (plotted to rss.png) and the
restarts. Exit status 1 if any stream came back corrupted (bytes that differ, not only missing),
if a relay exited unasked, or if a stream failed while no relay was restarting; else 0.

Usage: scripts/soak.py [--minutes M] [--workers N] [--restart-every S] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "files/relay"))  # the integration tests' MeshNet and helpers

from tests.integration.mesh_net import (  # noqa: E402
    MeshNet,
    SocksRefused,
    first_stream_succeeds_within,
    socks_connect,
)

RELAYS = ["a", "b", "c", "d"]
LINKS = [("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")]
TRANSIT = ["b", "d"]  # restarted in turn: the client's relay and the service's stay up
REKEY_SECONDS = 5
REJECT_SECONDS = 15
REKEY_MESSAGES = 5_000
STREAM_TIMEOUT = 60.0
# A stream that overlaps [restart, relay linked again + GRACE] counts as "during a restart".
GRACE_SECONDS = 3.0
RSS_EVERY = 2.0
# SOCKS5 replies (RFC 1928) as the client uses them (docs/client-config.md).
SOCKS_REPLIES = {
    1: "socks_general_failure",
    2: "socks_not_allowed",
    3: "socks_no_route",
    4: "socks_no_such_name",
    5: "socks_refused",
    6: "socks_ttl_expired",
}


def progress(text: str) -> None:
    print(f"soak {time.strftime('%H:%M:%S')}: {text}", flush=True)


@dataclass
class Stream:
    started: float
    ended: float
    sent: int
    received: int
    outcome: str  # "ok" or the reason it failed


@dataclass
class Restart:
    relay: str
    stopped: float
    exited: float = 0.0  # the old process has exited
    ready: float = 0.0
    linked: float = 0.0  # every link of the relay up again


@dataclass
class Soak:
    net: MeshNet
    socks_port: int
    started: float
    deadline: float
    streams: list[Stream] = field(default_factory=list)
    restarts: list[Restart] = field(default_factory=list)
    rss: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # name -> (t, MiB)
    unexpected_exits: list[str] = field(default_factory=list)
    restarting: set[str] = field(default_factory=set)


def stream_size(rng: random.Random) -> int:
    """Mostly small streams (the many-short-streams case), some of megabytes."""
    if rng.random() < 0.8:
        return rng.randint(1024, 64 * 1024)
    return rng.randint(256 * 1024, 4 * 1024 * 1024)


async def one_stream(soak: Soak, size: int) -> Stream:
    """An echo stream of `size` random bytes; its outcome and the bytes both ways."""
    payload = os.urandom(size)
    started = time.monotonic()
    sent = received = 0
    got = bytearray()
    try:
        async with asyncio.timeout(STREAM_TIMEOUT):
            reader, writer = await socks_connect(soak.socks_port, "data.alt", 9)
            try:
                writer.write(b"ECHO\n")

                async def send() -> None:
                    nonlocal sent
                    for offset in range(0, size, 32768):
                        chunk = payload[offset : offset + 32768]
                        writer.write(chunk)
                        await writer.drain()
                        sent += len(chunk)
                    writer.write_eof()

                sender = asyncio.create_task(send())
                try:
                    while data := await reader.read(65536):
                        got += data
                        received += len(data)
                finally:
                    if not sender.done():
                        sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError, OSError):
                        await sender
            finally:
                writer.close()
    except SocksRefused as refused:
        return Stream(
            started,
            time.monotonic(),
            sent,
            received,
            SOCKS_REPLIES.get(refused.reply, f"socks_reply_{refused.reply}"),
        )
    except TimeoutError:
        outcome = "timeout"
    except (ConnectionError, OSError, asyncio.IncompleteReadError) as error:
        outcome = f"connection_error ({type(error).__name__})"
    else:
        outcome = "ok"
    ended = time.monotonic()
    if got != payload[: len(got)]:
        outcome = "corrupted"  # bytes that differ from what was sent: never acceptable
    elif outcome == "ok" and received != size:
        outcome = "truncated"  # a clean end of stream before every byte came back
    return Stream(started, ended, sent, received, outcome)


async def worker(soak: Soak, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < soak.deadline:
        soak.streams.append(await one_stream(soak, stream_size(rng)))
        if soak.streams[-1].outcome != "ok":
            await asyncio.sleep(0.1)  # do not spin on a path that is down


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def sampler(soak: Soak) -> None:
    while time.monotonic() < soak.deadline:
        now = time.monotonic() - soak.started
        for name, relay in soak.net.relays.items():
            if relay.proc is None or name in soak.restarting:
                continue
            if relay.proc.popen.poll() is not None:
                soak.unexpected_exits.append(f"relay {name} exited {relay.proc.popen.returncode}")
                relay.proc = None
                continue
            mib = rss_mib(relay.pid)
            if mib is not None:
                soak.rss.setdefault(name, []).append((now, mib))
        await asyncio.sleep(RSS_EVERY)


def linked_again(net: MeshNet, name: str) -> bool:
    """Every link of relay `name` is up and routed over, seen from both of its ends."""
    routed = "altmesh_mesh_link_routed"
    try:
        return all(
            net.mesh_state(name, routed).get(peer) == "up"
            and net.mesh_state(peer, routed).get(name) == "up"
            for peer in net.relays[name].peers
        )
    except OSError:
        return False


async def restarter(soak: Soak, every: float) -> None:
    """A transit relay restarted at every multiple of `every` seconds from the start (right
    after the previous restart when one takes longer)."""
    turn = 0
    while True:
        await asyncio.sleep(max(0.0, soak.started + (turn + 1) * every - time.monotonic()))
        if time.monotonic() + 10 > soak.deadline:
            return
        name = TRANSIT[turn % len(TRANSIT)]
        turn += 1
        restart = Restart(name, time.monotonic())
        soak.restarts.append(restart)
        soak.restarting.add(name)
        relay = soak.net.relays[name]
        assert relay.proc is not None
        progress(f"restarting relay {name}")
        await asyncio.to_thread(relay.proc.stop, signal.SIGTERM)
        restart.exited = time.monotonic()
        await asyncio.to_thread(soak.net.start_relay, name)
        restart.ready = time.monotonic()
        soak.restarting.discard(name)
        while not linked_again(soak.net, name) and time.monotonic() < restart.ready + 60:
            await asyncio.sleep(0.2)
        restart.linked = time.monotonic()
        progress(
            f"relay {name} exited after {restart.exited - restart.stopped:.2f} s,"
            f" ready after {restart.ready - restart.stopped:.2f} s,"
            f" linked after {restart.linked - restart.stopped:.2f} s"
        )


async def reporter(soak: Soak) -> None:
    """A progress line every 30 s: this is a long run."""
    while time.monotonic() < soak.deadline:
        await asyncio.sleep(30)
        ok = sum(1 for s in soak.streams if s.outcome == "ok")
        left = max(0.0, soak.deadline - time.monotonic())
        progress(
            f"{len(soak.streams)} streams ({ok} ok),"
            f" {sum(s.received for s in soak.streams) / 1e6:.0f} MB back, {left / 60:.1f} min left"
        )


async def run(soak: Soak, workers: int, restart_every: float) -> None:
    background = [
        asyncio.create_task(sampler(soak)),
        asyncio.create_task(restarter(soak, restart_every)),
        asyncio.create_task(reporter(soak)),
    ]
    try:
        await asyncio.gather(*(worker(soak, seed) for seed in range(workers)))
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)


def restart_phase(soak: Soak, stream: Stream) -> str | None:
    """Which part of a restart a stream overlapped: "down" (stopped until ready again),
    "relinking" (ready until every link is routed, plus GRACE_SECONDS), or None."""
    for restart in soak.restarts:
        ready = restart.ready or time.monotonic()
        until = (restart.linked or time.monotonic()) + GRACE_SECONDS
        if stream.started <= ready and stream.ended >= restart.stopped:
            return "down"
        if stream.started <= until and stream.ended >= ready:
            return "relinking"
    return None


def during_restart(soak: Soak, stream: Stream) -> bool:
    return restart_phase(soak, stream) is not None


def report(soak: Soak, out: Path, minutes: float) -> int:
    streams = soak.streams
    ok = [s for s in streams if s.outcome == "ok"]
    failed = [s for s in streams if s.outcome != "ok"]
    in_restart = collections.Counter(s.outcome for s in failed if during_restart(soak, s))
    by_phase = collections.Counter(
        f"{restart_phase(soak, s)}: {s.outcome}" for s in failed if during_restart(soak, s)
    )
    outside = collections.Counter(s.outcome for s in failed if not during_restart(soak, s))
    sent = sum(s.sent for s in streams)
    received = sum(s.received for s in streams)
    rss_summary = {
        name: {
            "first_mib": round(points[0][1], 1),
            "peak_mib": round(max(mib for _, mib in points), 1),
            "last_mib": round(points[-1][1], 1),
        }
        for name, points in sorted(soak.rss.items())
        if points
    }
    data: dict[str, Any] = {
        "minutes": minutes,
        "streams": len(streams),
        "streams_ok": len(ok),
        "streams_failed": len(failed),
        "failed_during_restarts": dict(in_restart),
        "failed_during_restarts_by_phase": dict(by_phase),
        "failed_otherwise": dict(outside),
        "bytes_sent": sent,
        "bytes_received": received,
        "bytes_of_ok_streams": sum(s.received for s in ok),
        "restarts": [
            {
                "relay": r.relay,
                "at_seconds": round(r.stopped - soak.started, 1),
                # None: the run ended before that point of the restart
                "exited_after": round(r.exited - r.stopped, 2) if r.exited else None,
                "ready_after": round(r.ready - r.stopped, 2) if r.ready else None,
                "linked_after": round(r.linked - r.stopped, 2) if r.linked else None,
            }
            for r in soak.restarts
        ],
        "rss": rss_summary,
        "unexpected_exits": soak.unexpected_exits,
    }
    (out / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    plot(soak, out / "rss.png")

    print()
    print(f"== soak report ({minutes:g} min; {out})")
    print(f"streams: {len(streams)} opened, {len(ok)} ok, {len(failed)} failed")
    print(f"  failed while a relay restarted: {dict(in_restart) or 'none'}")
    for phase, count in sorted(by_phase.items()):
        print(f"    {phase}: {count}")
    print(f"  failed otherwise:               {dict(outside) or 'none'}")
    print(
        f"bytes: sent {sent:,}, received {received:,}"
        f" ({sent - received:,} not back, all in failed streams)"
    )
    print("restarts (seconds after SIGTERM: old process exited, new one ready, every link routed):")
    for r in data["restarts"]:
        print(
            f"  {r['at_seconds']:>7.1f} s  relay {r['relay']}: exited {seconds(r['exited_after'])},"
            f" ready {seconds(r['ready_after'])}, linked {seconds(r['linked_after'])}"
        )
    print("relay RSS (MiB, first / peak / last):")
    for name, figures in rss_summary.items():
        print(f"  {name}: {figures['first_mib']} / {figures['peak_mib']} / {figures['last_mib']}")
    print(f"RSS over time: {out / 'rss.png'}")

    problems = []
    if in_restart.get("corrupted") or outside.get("corrupted"):
        problems.append("streams came back corrupted")
    if soak.unexpected_exits:
        problems.append("; ".join(soak.unexpected_exits))
    if outside:
        problems.append(f"streams failed while no relay restarted: {dict(outside)}")
    if sent != received and not failed:
        problems.append("bytes were lost in streams that ended ok")
    for problem in problems:
        print(f"soak: FAIL: {problem}")
    if not problems:
        print(
            "soak: PASS (no corrupted stream, no relay exited unasked,"
            " every failure during a restart)"
        )
    return 1 if problems else 0


def seconds(value: float | None) -> str:
    return "(run ended)" if value is None else f"{value:.2f} s"


def plot(soak: Soak, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 4.5))
    for name, points in sorted(soak.rss.items()):
        axes.plot(
            [t / 60 for t, _ in points],
            [mib for _, mib in points],
            ".",
            markersize=3,
            label=f"relay {name}",
        )
    for r in soak.restarts:
        axes.axvline((r.stopped - soak.started) / 60, color="grey", linewidth=0.6, linestyle=":")
    axes.set_xlabel("minutes (dotted: a relay restarted)")
    axes.set_ylabel("RSS (MiB)")
    axes.set_title("altmesh soak: relay RSS over time")
    axes.set_ylim(bottom=0)
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", 10)))
    parser.add_argument("--workers", type=int, default=16, help="concurrent streams (default 16)")
    parser.add_argument("--restart-every", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument(
        "--out", type=Path, default=None, help="report directory (default build/soak-TIME)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the processes' directory (logs)")
    args = parser.parse_args()
    if not 0 < args.minutes <= 24 * 60:
        parser.error("--minutes: between 0 and 1440")
    if not 1 <= args.workers <= 512:
        parser.error("--workers: between 1 and 512")
    if args.restart_every < 15:
        parser.error("--restart-every: at least 15 seconds")
    out = args.out or ROOT / "build" / f"soak-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # leaves the MeshNet context: every process stops by PID

    signal.signal(signal.SIGTERM, stop)
    tmp = tempfile.mkdtemp(prefix="altmesh-soak-")
    try:
        progress(f"starting 4 relays, a service and a client in {tmp}")
        with MeshNet(
            Path(tmp),
            RELAYS,
            LINKS,
            services=["data"],
            rekey_seconds=REKEY_SECONDS,
            reject_seconds=REJECT_SECONDS,
            rekey_messages=REKEY_MESSAGES,
            capture=False,
        ) as net:
            net.start_relays()
            net.wait_links_up(LINKS)
            net.wait_routed(LINKS)
            net.start_service("data", "c")
            client = net.start_client("client", "a")
            assert client.socks_port is not None
            # The service's attachment is announced through the mesh: streams start once a
            # first one succeeds, so the run measures the mesh, not its start-up.
            first_stream_succeeds_within(client.socks_port, "data.alt", 30)
            started = time.monotonic()
            soak = Soak(net, client.socks_port, started, started + args.minutes * 60)
            progress(
                f"running {args.minutes:g} min: {args.workers} workers, a transit relay restarted"
                f" every {args.restart_every:g} s, links rekeyed every {REKEY_SECONDS} s"
            )
            try:
                asyncio.run(run(soak, args.workers, args.restart_every))
            except KeyboardInterrupt:
                progress("interrupted: reporting what ran")
            return report(soak, out, round((time.monotonic() - started) / 60, 2))
    finally:
        if args.keep:
            progress(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
