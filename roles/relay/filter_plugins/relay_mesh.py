"""Who links to whom in the relay mesh, from the relays' cards (what each relay's host says)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

Card = Mapping[str, Any]


def relay_wants(card: Card, all_hosts: Iterable[str]) -> set[str]:
    """The relays this relay wants links to: its relay_mesh_peers, or every other relay."""
    listed = set(card.get("mesh_peers") or [])
    return listed if listed else set(all_hosts) - {card["host"]}


def relay_mesh_peers(cards: Iterable[Card], me: str) -> list[dict[str, Any]]:
    """The peers of relay `me`: the relays that want a link with it and that it wants, by name.

    A link is undirected, so both ends must want it: a partial mesh is a restriction on both
    sides, and a relay with a list never gets a link it did not ask for.
    """
    by_host = {card["host"]: card for card in cards}
    mine = by_host.get(me)
    if mine is None:
        return []
    wanted = relay_wants(mine, by_host)
    peers = [
        {
            "name": card["name"],
            "public_key": card["public_key"],
            "endpoints": list(card["endpoints"]),
        }
        for host, card in by_host.items()
        if host != me and host in wanted and me in relay_wants(card, by_host)
    ]
    return sorted(peers, key=lambda peer: peer["name"])


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"relay_mesh_peers": relay_mesh_peers}
