"""SIGHUP applies a changed [[mesh.peers]] list and keeps every link that remains.

Relay A starts with peers B and C; D lists A but A does not list D yet. A's config is then
changed to peers C and D (B's to no peers), and both get SIGHUP: no process restarts, the A-C
link is the same link as before (no new one came up on either side, and a stream open across
it keeps flowing), the A-B link is closed, and A-D comes up.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from . import helpers
from .mesh_net import MeshNet, first_stream_succeeds_within, socks_connect


def test_sighup_applies_a_new_peer_list_and_keeps_the_links_that_remain(tmp_path: Path) -> None:
    with MeshNet(
        tmp_path, ["a", "b", "c", "d"], [("a", "b"), ("a", "c")], services=["data"], capture=False
    ) as net:
        net.relays["d"].peers = ["a"]
        net.start_relays()
        net.wait_links_up([("a", "b"), ("a", "c")])
        net.start_service("data", "c")
        client = net.start_client("client", "a")
        port = client.socks_port
        assert port is not None
        first_stream_succeeds_within(port, "data.alt", 20)
        pids = {name: relay.pid for name, relay in net.relays.items()}
        established = (net.links_established("a", "c"), net.links_established("c", "a"))

        async def reload_during_a_stream() -> bytes:
            reader, writer = await socks_connect(port, "data.alt", 9)
            writer.write(b"ECHO\nbefore ")
            assert await reader.readexactly(7) == b"before "
            net.relays["a"].peers = ["c", "d"]
            net.relays["b"].peers = []
            net.write_relay_config("a")
            net.write_relay_config("b")
            net.signal_relay("a", signal.SIGHUP)
            net.signal_relay("b", signal.SIGHUP)
            await asyncio.to_thread(net.wait_links_up, [("a", "d")], 30)
            writer.write(b"after")
            echoed = await reader.readexactly(5)
            writer.close()
            return echoed

        assert asyncio.run(asyncio.wait_for(reload_during_a_stream(), 60)) == b"after"
        assert {name: relay.pid for name, relay in net.relays.items()} == pids
        assert (net.links_established("a", "c"), net.links_established("c", "a")) == established
        assert net.mesh_state("a") == {"c": "up", "d": "up"}
        helpers.wait_until(
            lambda: helpers.metric_value(net.relays["b"].metrics(), "altmesh_links") == 0,
            10,
            "B's link to A to close",
        )
        assert "b" not in net.mesh_state("a") and net.mesh_state("b") == {}
