"""The destination table: which origin relay each announced address is routed to.

Normally one relay announces an address (the one its node is attached to). While a node moves,
or when a hostile relay claims someone else's address, several do: the address is then routed to
the nearest reachable claimant (lowest path cost, then lowest relay id), so a false claim only
attracts the traffic of relays nearer to the liar than to the real relay.
"""

from __future__ import annotations

from collections.abc import Mapping


class DestinationTable:
    __slots__ = ("_claimants", "origin_of")

    def __init__(self) -> None:
        self.origin_of: dict[int, bytes] = {}  # address (as an int) -> the origin it is routed to
        self._claimants: dict[int, set[bytes]] = {}  # addresses claimed by two origins or more

    def __len__(self) -> int:
        return len(self.origin_of)

    @property
    def contested(self) -> int:
        return len(self._claimants)

    def claim(self, address: int, origin: bytes, distance: Mapping[bytes, int]) -> bool:
        """`origin` announces `address`; return whether the address's chosen origin changed."""
        current = self.origin_of.get(address)
        if current is None:
            self.origin_of[address] = origin
            return True
        if current == origin and address not in self._claimants:
            return False
        self._claimants.setdefault(address, {current}).add(origin)
        return self._resolve(address, distance)

    def release(self, address: int, origin: bytes, distance: Mapping[bytes, int]) -> bool:
        """`origin` no longer announces `address`; return whether the chosen origin changed."""
        claimants = self._claimants.get(address)
        if claimants is None:
            if self.origin_of.get(address) == origin:
                del self.origin_of[address]
                return True
            return False
        claimants.discard(origin)
        if len(claimants) == 1:
            del self._claimants[address]
            (sole,) = claimants
            changed = self.origin_of[address] != sole
            self.origin_of[address] = sole
            return changed
        return self._resolve(address, distance)

    def resolve_all(self, distance: Mapping[bytes, int]) -> int:
        """Re-choose every contested address after distances changed; return how many moved."""
        return sum(self._resolve(address, distance) for address in self._claimants)

    def _resolve(self, address: int, distance: Mapping[bytes, int]) -> bool:
        def rank(origin: bytes) -> tuple[int, int, bytes]:
            cost = distance.get(origin)
            return (0, cost, origin) if cost is not None else (1, 0, origin)

        best = min(self._claimants[address], key=rank)
        changed = self.origin_of.get(address) != best
        self.origin_of[address] = best
        return changed
