"""The timers of a link (docs/protocol.md sections 8 and 9): handshake timeout, keepalive, idle
timeout, rekey after time and reject after time.

Time is never read here: every deadline is computed from the moments the link recorded (when it
started, sent, received and installed keys) and every check is given `now`, so timers are tested
by passing numbers, without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

from altmesh.protocol.errors import HandshakeTimeout, PeerTimeout, SessionExpired
from altmesh.protocol.link_config import LinkConfig
from altmesh.protocol.receive import Receiver
from altmesh.protocol.send import Sender


@dataclass(frozen=True)
class TimerWork:
    """What the due timers of an established link ask for."""

    start_rekey: bool
    keepalive: bool  # nothing was sent for keepalive_interval (if nothing is queued either)


class LinkTimers:
    """Deadlines of one link, from the state of its sender and receiver."""

    def __init__(self, config: LinkConfig, sender: Sender, receiver: Receiver) -> None:
        self._config = config
        self._sender = sender
        self._receiver = receiver
        self.started_at: float | None = None  # when the connection started (handshake clock)

    # ---------------------------------------------------------------- handshake
    def handshake_deadline(self) -> float | None:
        if self.started_at is None:
            return None
        return self.started_at + self._config.handshake_timeout

    def check_handshake(self, now: float) -> None:
        deadline = self.handshake_deadline()
        if deadline is not None and now >= deadline:
            raise HandshakeTimeout(
                f"no handshake completed within {self._config.handshake_timeout} s"
            )

    # ---------------------------------------------------------------- established
    def established_deadline(self, *, rekey_running: bool) -> float:
        config, sender, receiver = self._config, self._sender, self._receiver
        sent, send_key = sender.last_sent, sender.key_created
        deadline = sent + config.keepalive_interval
        idle = receiver.last_received + config.effective_idle_timeout
        if idle < deadline:
            deadline = idle
        oldest_key = receiver.key_created if receiver.key_created < send_key else send_key
        reject = oldest_key + config.reject_after_time
        if reject < deadline:
            deadline = reject
        if not rekey_running:
            rekey = send_key + config.rekey_after_time
            if rekey < deadline:
                deadline = rekey
            if sender.rekey_due and sent < deadline:
                deadline = sent  # due since that message was sealed
        return deadline

    def check_established(self, now: float, *, rekey_running: bool) -> TimerWork:
        """Raise the fatal timeouts; say whether a rekey or a keepalive is due."""
        config, sender, receiver = self._config, self._sender, self._receiver
        if now - min(sender.key_created, receiver.key_created) >= config.reject_after_time:
            raise SessionExpired(
                f"session keys older than {config.reject_after_time} s (rekey did not complete)"
            )
        silent = now - receiver.last_received
        if silent >= config.effective_idle_timeout:
            raise PeerTimeout(f"nothing received from the peer for {silent:.1f} s")
        start_rekey = not rekey_running and (
            sender.rekey_due or now - sender.key_created >= config.rekey_after_time
        )
        keepalive = now - sender.last_sent >= config.keepalive_interval
        return TimerWork(start_rekey=start_rekey, keepalive=keepalive)
