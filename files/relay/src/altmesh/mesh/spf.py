"""Shortest paths over the two-way links of the database (Dijkstra), ties broken by relay id,
and the test of whether a change of links can change them."""

from __future__ import annotations

import heapq
from collections.abc import Container, Mapping
from typing import Protocol


class Links(Protocol):
    """What an origin's fragment 0 gives the computation: its neighbors and their costs."""

    @property
    def neighbors(self) -> tuple[bytes, ...]: ...

    @property
    def costs(self) -> tuple[int, ...]: ...


def shortest_paths(
    root: bytes, links: Mapping[bytes, Links], root_neighbors: Container[bytes]
) -> tuple[dict[bytes, int], dict[bytes, bytes]]:
    """Distances and first hops from `root` to every relay it can reach.

    A link u -> v (cost announced by u) is used only if v also announces a link to u (the two-way
    check), and a link of the root only if `root_neighbors` holds v (the link is up right now,
    whatever the root last announced). Among equal-cost paths the one whose first hop has the
    lowest id wins, so that every relay computes one answer whatever the order of its input.
    """
    distance = {root: 0}
    first_hop: dict[bytes, bytes] = {}
    heap: list[tuple[int, bytes]] = []
    push, pop, get = heapq.heappush, heapq.heappop, links.get
    own = get(root)
    if own is not None:
        for v, cost in zip(own.neighbors, own.costs, strict=True):
            back = get(v)
            if v in root_neighbors and back is not None and root in back.neighbors:
                distance[v] = cost
                first_hop[v] = v
                push(heap, (cost, v))
    while heap:
        cost_u, u = pop(heap)
        if cost_u > distance[u]:
            continue  # a stale entry: u was reached more cheaply since
        hop = first_hop[u]
        out = links[u]
        for v, cost in zip(out.neighbors, out.costs, strict=True):
            back = get(v)
            if back is None or u not in back.neighbors:
                continue
            cost_v = cost_u + cost
            known = distance.get(v)
            if known is None or cost_v < known:
                distance[v] = cost_v
                first_hop[v] = hop
                push(heap, (cost_v, v))
            elif cost_v == known and hop < first_hop[v]:
                # Costs are >= 1, so every equal-cost predecessor of v is final before v is.
                first_hop[v] = hop
    return distance, first_hop


class _Change(Protocol):
    """An origin's links before and after a database change (`lsdb.Change`)."""

    @property
    def entry(self) -> _Entry: ...

    @property
    def old_neighbors(self) -> tuple[bytes, ...]: ...

    @property
    def old_costs(self) -> tuple[int, ...]: ...


class _Entry(Links, Protocol):
    @property
    def origin(self) -> bytes: ...

    @property
    def live(self) -> bool: ...


def links_change_routes(
    change: _Change, distance: Mapping[bytes, int], links: Mapping[bytes, Links]
) -> bool:
    """Whether an origin's new links can change any shortest path or first hop.

    Checked against the last computation's `distance`, for every two-way link that appears,
    disappears or changes cost: a link that was not tight (not on a shortest path) going away or
    getting dearer, or a link that does not reach anything at least as cheaply as before,
    changes nothing. When every change since the last computation is of that kind, the last
    distances are still optimal with the same tight links, hence the same first hops, and the
    computation can be skipped (most relays, when one link far away changes).
    """
    entry = change.entry
    origin = entry.origin
    before = dict(zip(change.old_neighbors, change.old_costs, strict=True))
    after = dict(zip(entry.neighbors, entry.costs, strict=True)) if entry.live else {}
    for neighbor in before.keys() | after.keys():
        back = links.get(neighbor)
        if back is None or origin not in back.neighbors:
            continue  # not two-way, before or after
        cost_before, cost_after = before.get(neighbor), after.get(neighbor)
        if cost_before == cost_after:
            continue
        if _link_matters(distance, origin, neighbor, cost_before, cost_after):
            return True
        if (cost_before is None) != (cost_after is None):  # the way back comes or goes
            cost_back = back.costs[back.neighbors.index(origin)]
            if _link_matters(
                distance,
                neighbor,
                origin,
                None if cost_before is None else cost_back,
                None if cost_after is None else cost_back,
            ):
                return True
    return False


def _link_matters(
    distance: Mapping[bytes, int], u: bytes, v: bytes, before: int | None, after: int | None
) -> bool:
    """Whether the link u -> v changing cost from `before` to `after` (None: absent) can change
    shortest paths computed with `distance`."""
    from_u = distance.get(u)
    if from_u is None:
        return False  # u is unreachable: its links lead nowhere (a link to u is checked apart)
    to_v = distance.get(v)
    if before is not None and to_v is not None and from_u + before == to_v:
        return True  # a tight link changed
    return after is not None and (to_v is None or from_u + after <= to_v)
