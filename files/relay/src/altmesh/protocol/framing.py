"""Framing (docs/protocol.md section 3): every Noise message on a byte stream is preceded by its
length, 2 bytes big-endian. Links use it on TCP; end-to-end sessions inside a stream's bytes.

`FrameReader` reassembles frames from bytes split or coalesced anyhow, and checks each length as
soon as its 2 bytes are in, so that a frame already known to be invalid is never waited for.
"""

from __future__ import annotations

from collections.abc import Callable

from altmesh.protocol.constants import LENGTH_PREFIX_LEN, MAX_MESSAGE_LEN
from altmesh.protocol.errors import InvalidArgument

LengthCheck = Callable[[int], None]
"""Raises a ProtocolError if a frame of this length is invalid in the reader's current state."""

FrameHandler = Callable[[memoryview], bool]
"""Takes one complete frame's message (a view valid only during the call); False stops reading."""


def length_prefix(length: int) -> bytes:
    """The 2-byte prefix of a message of `length` bytes (at most 65535)."""
    if not 0 <= length <= MAX_MESSAGE_LEN:
        raise InvalidArgument(f"a framed message is 0..{MAX_MESSAGE_LEN} bytes, not {length}")
    return length.to_bytes(LENGTH_PREFIX_LEN, "big")


def frame(message: bytes) -> bytes:
    """`message` with its length prefix."""
    return length_prefix(len(message)) + message


class FrameReader:
    """Reassembles the frames of one byte stream; holds at most one incomplete frame."""

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held back (0 at a frame boundary)."""
        return len(self._partial)

    def feed(
        self, data: bytes | memoryview, check_length: LengthCheck, on_frame: FrameHandler
    ) -> None:
        """Hand every frame that `data` completes to `on_frame`, in order.

        `check_length` sees each length before its frame is complete. `on_frame` may change what
        `check_length` accepts (a handshake completing); when it returns False, reading stops and
        every byte not yet handed on is dropped (the link was closed). A ProtocolError from either
        callback propagates; the stream is then dead and the reader must not be fed again.
        """
        if self._partial:
            self._partial += data
            consumed = self._frames(self._partial, check_length, on_frame)
            del self._partial[:consumed]
            return
        # The common case: no partial frame waiting, so `data` is parsed without a copy.
        consumed = self._frames(data, check_length, on_frame)
        if consumed < len(data):
            self._partial = bytearray(data[consumed:])

    @staticmethod
    def _frames(
        source: bytes | bytearray | memoryview, check_length: LengthCheck, on_frame: FrameHandler
    ) -> int:
        """Process the complete frames of `source`; returns how many bytes were consumed.

        Frames go out as memoryview slices (no copy before decryption). The views die with this
        call, so the caller may resize a bytearray `source` afterwards.
        """
        view = memoryview(source)
        offset = 0
        end = len(source)
        while end - offset >= LENGTH_PREFIX_LEN:
            length = (source[offset] << 8) | source[offset + 1]
            check_length(length)
            frame_end = offset + LENGTH_PREFIX_LEN + length
            if frame_end > end:
                break
            keep_reading = on_frame(view[offset + LENGTH_PREFIX_LEN : frame_end])
            offset = frame_end
            if not keep_reading:
                return end
        return offset
