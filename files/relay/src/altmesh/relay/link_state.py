"""What the relay keeps per link (`LinkTransport[RelayLinkState]`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from altmesh.net.link import LinkTransport
from altmesh.relay.forwarding import Half, Route


@dataclass
class RelayLinkState:
    """Per-link state of the relay; each concept owns its field."""

    # forwarding: stream id on this link -> its route and the half on this link
    routes: dict[int, tuple[Route, Half]] = field(default_factory=dict)
    # attachment: the handshake completed and the peer's address maps to this link
    attached: bool = False
    # mesh: the peer is a relay of the mesh (the key it proved); None for a node's link
    mesh_peer: bytes | None = None
    # a node's link that only measures this relay (HANDSHAKE_FLAG_PROBE): never attached
    probe: bool = False

    @property
    def established(self) -> bool:
        """The handshake completed and the link was classified (a node's, a probe, a relay's)."""
        return self.attached or self.probe or self.mesh_peer is not None


RelayLink = LinkTransport[RelayLinkState]
