"""Rekeying (docs/protocol.md section 8): the make-before-break state machine of one link.

A fresh IK handshake runs inside REKEY_INIT / REKEY_REPLY records under the old keys while data
keeps flowing. Each direction switches keys at an explicit marker: REKEY_REPLY (responder to
initiator of the rekey) and REKEY_SWITCH (the other way) are each the last record sealed under
the old key of their direction; every later message of that direction uses the new key. TCP
keeps messages in order, so no record can be lost, duplicated or reordered across the switch.
When both ends start at once, the REKEY_INIT of the link's initiator wins and the other is
dropped.

`Rekeying` decides; it holds no keys in use and sends nothing. Each step returns a `KeySwitch`
that the link applies in its documented order.
"""

from __future__ import annotations

from dataclasses import dataclass

from altmesh.protocol import constants as C
from altmesh.protocol import records as R
from altmesh.protocol.errors import HandshakeError, RekeyError
from altmesh.protocol.handshake import (
    FLAG_REKEY,
    InitiatorHandshake,
    InitiatorPayload,
    ResponderHandshake,
    ResponderPayload,
)
from altmesh.protocol.keys import StaticKeyPair
from altmesh.protocol.link_config import LinkConfig
from altmesh.protocol.link_handshake import initiator_payload, responder_payload
from altmesh.protocol.tai64n import TimestampIssuer


@dataclass(frozen=True)
class KeySwitch:
    """What the link does after one rekey step, in this order:

    1. install `receive_key` (if any) for every following message from the peer;
    2. queue `record` (if any);
    3. if `send_key` is set: seal everything queued under the old send key, then send with it;
    4. if `completed`: both directions use epoch `epoch`; report it (`initiated_by_us`).
    """

    epoch: int
    record: R.Record | None = None
    receive_key: bytes | None = None
    send_key: bytes | None = None
    completed: bool = False
    initiated_by_us: bool = False


@dataclass
class _Initiating:
    epoch: int
    handshake: InitiatorHandshake


@dataclass
class _Responding:
    epoch: int
    receive_key: bytes


class Rekeying:
    """The rekey state of one established link; `current_epoch` is the epoch both directions use
    (no rekey can start while the directions differ: a rekey is then running)."""

    def __init__(
        self,
        config: LinkConfig,
        prologue_bytes: bytes,
        local: StaticKeyPair,
        remote_static: bytes,
        *,
        is_link_initiator: bool,
        timestamps: TimestampIssuer,
    ) -> None:
        self._config = config
        self._prologue = prologue_bytes
        self._local = local
        self._remote_static = remote_static
        self._is_link_initiator = is_link_initiator
        self._timestamps = timestamps
        self._state: _Initiating | _Responding | None = None

    @property
    def running(self) -> bool:
        return self._state is not None

    def start(self, current_epoch: int) -> KeySwitch | None:
        """Begin a rekey to the next epoch (None if one is running): queue REKEY_INIT."""
        if self._state is not None:
            return None
        epoch = current_epoch + 1
        handshake = InitiatorHandshake(self._prologue, self._local, self._remote_static)
        message = handshake.write_init(
            initiator_payload(
                self._config, self._local, flags=FLAG_REKEY, timestamp=self._timestamps.next()
            )
        )
        self._state = _Initiating(epoch, handshake)
        return KeySwitch(epoch, record=R.RekeyInitRecord(epoch, message))

    def on_init(self, record: R.RekeyInitRecord, current_epoch: int) -> KeySwitch | None:
        """The peer's REKEY_INIT: answer it, switch our send key after the reply (None: ours
        wins the simultaneous start and theirs is dropped)."""
        expected = current_epoch + 1
        if record.epoch != expected:
            raise RekeyError(f"REKEY_INIT for epoch {record.epoch}, expected {expected}")
        state = self._state
        if isinstance(state, _Responding):
            raise RekeyError("REKEY_INIT while the previous rekey awaits its REKEY_SWITCH")
        if isinstance(state, _Initiating):
            if self._is_link_initiator:
                return None  # both started at once: the link initiator's rekey wins
            self._state = None  # ours loses; answer theirs
        if len(record.message) != C.HANDSHAKE_INIT_LEN:
            raise RekeyError(
                f"rekey handshake message 1 is {len(record.message)} bytes, "
                f"must be {C.HANDSHAKE_INIT_LEN}"
            )
        responder = ResponderHandshake(self._prologue, (self._local,))
        try:
            payload = InitiatorPayload.decode(responder.read_init(record.message))
        except HandshakeError as error:
            raise RekeyError(f"rekey handshake message 1 invalid: {error.message}") from None
        if responder.remote_static != self._remote_static:
            raise RekeyError("rekey handshake from a different static key than the link's")
        if payload.flags != FLAG_REKEY:
            raise RekeyError("rekey handshake without the rekey flag")
        reply, keys = responder.write_response(
            responder_payload(self._config, self._local, flags=FLAG_REKEY)
        )
        self._state = _Responding(record.epoch, keys.receive_key)
        # REKEY_REPLY is the last message under the old send key; then the new one starts.
        return KeySwitch(
            record.epoch, record=R.RekeyReplyRecord(record.epoch, reply), send_key=keys.send_key
        )

    def on_reply(self, record: R.RekeyReplyRecord) -> KeySwitch:
        """The answer to our REKEY_INIT: both new keys; REKEY_SWITCH ends our old send key."""
        state = self._state
        if not isinstance(state, _Initiating) or state.epoch != record.epoch:
            raise RekeyError(f"unexpected REKEY_REPLY for epoch {record.epoch}")
        if len(record.message) != C.HANDSHAKE_RESPONSE_LEN:
            raise RekeyError(
                f"rekey handshake message 2 is {len(record.message)} bytes, "
                f"must be {C.HANDSHAKE_RESPONSE_LEN}"
            )
        try:
            payload_bytes, keys = state.handshake.read_response(record.message)
            payload = ResponderPayload.decode(payload_bytes)
        except HandshakeError as error:
            raise RekeyError(f"rekey handshake message 2 invalid: {error.message}") from None
        if payload.flags != FLAG_REKEY:
            raise RekeyError("rekey reply without the rekey flag")
        self._state = None
        # The peer switched its send key right after REKEY_REPLY: so do we for receiving.
        return KeySwitch(
            state.epoch,
            record=R.RekeySwitchRecord(state.epoch),
            receive_key=keys.receive_key,
            send_key=keys.send_key,
            completed=True,
            initiated_by_us=True,
        )

    def on_switch(self, record: R.RekeySwitchRecord) -> KeySwitch:
        """The peer's REKEY_SWITCH: it sends with the new key from the next message on."""
        state = self._state
        if not isinstance(state, _Responding) or state.epoch != record.epoch:
            raise RekeyError(f"unexpected REKEY_SWITCH for epoch {record.epoch}")
        self._state = None
        return KeySwitch(
            state.epoch, receive_key=state.receive_key, completed=True, initiated_by_us=False
        )
