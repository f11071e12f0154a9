"""Frames on the wire: preamble ``AA AA AA 96 69``, big-endian LEN, body, XOR checksum.

LEN counts every byte after itself including CHK; CHK is the XOR of every byte from the first
LEN byte to the last data byte. A host request's body is CMD PARA DATA, a reader response's
body is SW1 SW2 SW3 DATA. ``FrameParser`` pulls frames of either direction out of an arbitrary
byte stream: garbage is skipped, a frame that fails its checksum is reported and parsing goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from operator import xor

from devices.idcard.errors import ChecksumError, LengthError, PayloadError

PREAMBLE = b"\xaa\xaa\xaa\x96\x69"
HEADER_LEN = len(PREAMBLE) + 2
"""Preamble plus the two LEN bytes: what must be read before the frame's size is known."""
MIN_LEN = 3
"""The smallest LEN: a request with no data (CMD PARA CHK)."""
MAX_LEN = 4096
"""The largest LEN accepted; the largest real reply (two fingerprints) has LEN 2314."""


def checksum(data: bytes | bytearray) -> int:
    """XOR of all bytes."""
    return reduce(xor, data, 0)


def encode_frame(body: bytes) -> bytes:
    """Wrap a body (request or response) with preamble, LEN and CHK."""
    length = len(body) + 1
    if length > MAX_LEN:
        raise LengthError(f"frame body of {len(body)} bytes exceeds the {MAX_LEN}-byte limit")
    head = length.to_bytes(2, "big")
    return PREAMBLE + head + body + bytes([checksum(head + body)])


@dataclass(frozen=True)
class Request:
    """A host-to-reader command."""

    cmd: int
    """Command byte."""
    para: int
    """Parameter byte."""
    data: bytes = b""
    """Data bytes after PARA (only ``61 FF nn`` has any)."""

    def encode(self) -> bytes:
        """The whole frame as sent on the wire."""
        return encode_frame(bytes([self.cmd, self.para]) + self.data)

    @classmethod
    def from_body(cls, body: bytes) -> Request:
        """Interpret a parsed frame body as a request."""
        if len(body) < 2:
            raise PayloadError(f"request body of {len(body)} bytes is shorter than CMD PARA")
        return cls(body[0], body[1], bytes(body[2:]))


@dataclass(frozen=True)
class Response:
    """A reader-to-host reply."""

    sw1: int
    """Card status byte 1 (passed through; 00 in captures)."""
    sw2: int
    """Card status byte 2 (passed through; 00 in captures)."""
    sw3: int
    """Reader/SAM status (see ``status``)."""
    data: bytes = b""
    """Data bytes after SW3."""

    def encode(self) -> bytes:
        """The whole frame as sent on the wire."""
        return encode_frame(bytes([self.sw1, self.sw2, self.sw3]) + self.data)

    @classmethod
    def from_body(cls, body: bytes) -> Response:
        """Interpret a parsed frame body as a response."""
        if len(body) < 3:
            raise PayloadError(f"response body of {len(body)} bytes is shorter than SW1 SW2 SW3")
        return cls(body[0], body[1], body[2], bytes(body[3:]))


class FrameParser:
    """Incremental receiver: feed bytes as they arrive, pop frame bodies as they complete.

    ``pop`` returns the next complete, checksum-valid frame body, or ``None`` when more bytes are
    needed. It raises ``ChecksumError`` or ``LengthError`` for a bad frame after dropping it, so
    the next ``pop`` goes on with the bytes that follow. Resynchronisation restarts one byte past
    a bad frame's preamble, so a valid frame that begins inside a bad one is never lost. While a
    frame is incomplete, a complete valid frame later in the buffer wins over it (the incomplete
    one was a truncated reply or garbage that looked like a preamble).
    """

    def __init__(self, max_len: int = MAX_LEN) -> None:
        self._buf = bytearray()
        self._max_len = max_len
        self.skipped = 0
        """Bytes discarded as garbage so far (for diagnostics)."""

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes held, not yet part of a popped frame."""
        return len(self._buf)

    def needed(self) -> int:
        """How many more bytes would complete the frame now being received (at least 1)."""
        start = self._buf.find(PREAMBLE)
        if start < 0:
            return max(1, HEADER_LEN - self._partial_preamble_len())
        have = len(self._buf) - start
        if have < HEADER_LEN:
            return HEADER_LEN - have
        length = int.from_bytes(self._buf[start + 5:start + 7], "big")
        return max(1, HEADER_LEN + length - have)

    def _partial_preamble_len(self) -> int:
        """Length of the longest preamble prefix at the end of the buffer."""
        for n in range(min(len(PREAMBLE) - 1, len(self._buf)), 0, -1):
            if self._buf.endswith(PREAMBLE[:n]):
                return n
        return 0

    def _drop(self, n: int) -> None:
        self.skipped += n
        del self._buf[:n]

    def _complete_valid_at(self, start: int) -> int:
        """End offset of a complete, valid frame starting at ``start``, or -1."""
        if len(self._buf) - start < HEADER_LEN:
            return -1
        length = int.from_bytes(self._buf[start + 5:start + 7], "big")
        if length < MIN_LEN or length > self._max_len:
            return -1
        end = start + HEADER_LEN + length
        if end > len(self._buf):
            return -1
        if checksum(self._buf[start + 5:end - 1]) != self._buf[end - 1]:
            return -1
        return end

    def pop(self) -> bytes | None:
        """The next frame's body (after LEN, without CHK), or None if none is complete yet."""
        while True:
            start = self._buf.find(PREAMBLE)
            if start < 0:
                # keep a trailing partial preamble; everything before it is garbage
                self._drop(len(self._buf) - self._partial_preamble_len())
                return None
            if start:
                self._drop(start)
            if len(self._buf) < HEADER_LEN:
                return None
            length = int.from_bytes(self._buf[5:7], "big")
            if length < MIN_LEN or length > self._max_len:
                self._drop(1)
                raise LengthError(f"frame length {length} outside {MIN_LEN}..{self._max_len}")
            end = HEADER_LEN + length
            if len(self._buf) < end:
                later = self._buf.find(PREAMBLE, 1)
                while later > 0:
                    if self._complete_valid_at(later) > 0:
                        self._drop(later)  # the incomplete frame was truncated or garbage
                        break
                    later = self._buf.find(PREAMBLE, later + 1)
                else:
                    return None
                continue
            expected = checksum(self._buf[5:end - 1])
            if expected != self._buf[end - 1]:
                received = self._buf[end - 1]
                self._drop(1)
                raise ChecksumError(
                    f"frame checksum 0x{received:02X} does not match the computed 0x{expected:02X}")
            body = bytes(self._buf[7:end - 1])
            del self._buf[:end]
            return body
