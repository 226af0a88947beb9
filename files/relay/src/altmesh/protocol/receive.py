"""The receive side of a link (docs/protocol.md sections 3, 5 and 8): the receive key, the length
rule for transport frames, and decryption that refuses a key past its reject limits.
"""

from __future__ import annotations

from altmesh.protocol import constants as C
from altmesh.protocol.errors import BadLength, SessionExpired
from altmesh.protocol.link_config import LinkConfig, LinkStats
from altmesh.protocol.transport import TransportCipher


def check_transport_length(length: int) -> None:
    """A transport frame holds at least the 16-byte tag."""
    if length < C.TAG_LEN:
        raise BadLength(f"transport message of {length} bytes is shorter than its MAC")


class Receiver:
    """The receive key of an established link."""

    def __init__(self, config: LinkConfig, stats: LinkStats) -> None:
        self._config = config
        self._stats = stats
        self._cipher: TransportCipher | None = None
        self.key_created = 0.0  # when the current receive key was installed
        self.last_received = 0.0  # when the peer's last bytes arrived

    @property
    def epoch(self) -> int:
        return self._cipher.epoch if self._cipher is not None else 0

    def install_key(self, key: bytes, epoch: int, now: float) -> None:
        """Decrypt every following message with a new key."""
        self._cipher = TransportCipher(key, epoch)
        self.key_created = now

    def open(self, frame: memoryview, now: float) -> bytes:
        """The plaintext of the peer's next transport message."""
        cipher = self._cipher
        assert cipher is not None, "open() before the link is established"
        config = self._config
        if now - self.key_created >= config.reject_after_time:
            raise SessionExpired(
                f"peer still uses the key of epoch {cipher.epoch}, older than "
                f"{config.reject_after_time} s"
            )
        if cipher.counter >= config.reject_after_messages:
            raise SessionExpired(f"peer used the key of epoch {cipher.epoch} too often")
        plaintext = cipher.decrypt(frame)
        self._stats.messages_in += 1
        return plaintext
