"""Data layouts of replies: base info (text, photo, fingerprints), SAM ID, newest address."""

from __future__ import annotations

from dataclasses import dataclass

from devices.idcard.errors import PayloadError

TEXT_LEN = 256
PHOTO_LEN = 1024
FINGERPRINT_TEMPLATE_LEN = 512
NEWEST_ADDRESS_LEN = 70


@dataclass(frozen=True)
class BaseInfo:
    """The three blocks of a read-base-info reply, still raw."""

    text: bytes
    """256-byte UCS-2 LE text block."""
    photo: bytes
    """1024-byte WLT photo block."""
    fingerprint: bytes | None
    """0, 512 or 1024 bytes of fingerprint templates; None when not asked for."""


def parse_base_info(data: bytes, *, with_fingerprint: bool) -> BaseInfo:
    """Split a ``30 01`` / ``30 10`` reply's data (after SW3) into its blocks."""
    head = 6 if with_fingerprint else 4
    if len(data) < head:
        raise PayloadError(f"base info reply of {len(data)} bytes has no length header")
    text_len = int.from_bytes(data[0:2], "big")
    photo_len = int.from_bytes(data[2:4], "big")
    fp_len = int.from_bytes(data[4:6], "big") if with_fingerprint else 0
    if text_len != TEXT_LEN or photo_len != PHOTO_LEN:
        raise PayloadError(f"base info reply declares text {text_len} and photo {photo_len} bytes,"
                           f" expected {TEXT_LEN} and {PHOTO_LEN}")
    if fp_len % FINGERPRINT_TEMPLATE_LEN or fp_len > 2 * FINGERPRINT_TEMPLATE_LEN:
        raise PayloadError(f"fingerprint block of {fp_len} bytes is not 0, 512 or 1024")
    if len(data) != head + text_len + photo_len + fp_len:
        raise PayloadError(f"base info reply has {len(data)} data bytes, its header promises "
                           f"{head + text_len + photo_len + fp_len}")
    text = data[head:head + text_len]
    photo = data[head + text_len:head + text_len + photo_len]
    fingerprint = data[head + text_len + photo_len:] if with_fingerprint else None
    return BaseInfo(bytes(text), bytes(photo), None if fingerprint is None else bytes(fingerprint))


def encode_base_info(info: BaseInfo) -> bytes:
    """The inverse of ``parse_base_info`` (used by the simulator)."""
    head = len(info.text).to_bytes(2, "big") + len(info.photo).to_bytes(2, "big")
    if info.fingerprint is not None:
        head += len(info.fingerprint).to_bytes(2, "big")
    return head + info.text + info.photo + (info.fingerprint or b"")


@dataclass(frozen=True)
class SamId:
    """The 16-byte SAM identity."""

    part1: int
    part2: int
    part3: int
    part4: int
    part5: int

    def __str__(self) -> str:
        # Sources disagree on 9 or 10 digits for the last two numbers; 10 holds any uint32.
        return (f"{self.part1:02d}.{self.part2:02d}-{self.part3:08d}-"
                f"{self.part4:010d}-{self.part5:010d}")

    def encode(self) -> bytes:
        """The 16 bytes as the reader sends them."""
        return (self.part1.to_bytes(2, "little") + self.part2.to_bytes(2, "little")
                + self.part3.to_bytes(4, "little") + self.part4.to_bytes(4, "little")
                + self.part5.to_bytes(4, "little"))


def parse_sam_id(data: bytes) -> SamId:
    """Decode the SAM ID reply data: 2-byte LE, 2-byte LE, three 4-byte LE integers."""
    if len(data) != 16:
        raise PayloadError(f"SAM ID reply has {len(data)} data bytes, expected 16")
    return SamId(
        int.from_bytes(data[0:2], "little"), int.from_bytes(data[2:4], "little"),
        int.from_bytes(data[4:8], "little"), int.from_bytes(data[8:12], "little"),
        int.from_bytes(data[12:16], "little"),
    )


def parse_newest_address(data: bytes) -> str:
    """Decode the ``30 03`` reply: 70 bytes of UCS-2 LE, space padded."""
    if len(data) != NEWEST_ADDRESS_LEN:
        raise PayloadError(f"newest address reply has {len(data)} data bytes, expected "
                           f"{NEWEST_ADDRESS_LEN}")
    from devices.idcard.cardtext import decode_ucs2

    return decode_ucs2(data)


FINGER_NAMES: dict[int, str] = {
    11: "right thumb", 12: "right index", 13: "right middle", 14: "right ring",
    15: "right little", 16: "left thumb", 17: "left index", 18: "left middle",
    19: "left ring", 20: "left little", 97: "uncertain right", 98: "uncertain left",
    99: "uncertain",
}


@dataclass(frozen=True)
class FingerprintInfo:
    """What a fingerprint template says about itself (never the template itself)."""

    enrolled: bool
    """Byte 4 of the template is 1."""
    finger_code: int
    """Byte 5: finger position code."""
    finger: str
    """The finger's name, or 'unknown'."""
    quality: int
    """Byte 6 (one source): capture quality."""


def parse_fingerprints(block: bytes) -> list[FingerprintInfo]:
    """Describe each 512-byte template in a fingerprint block."""
    out = []
    for i in range(0, len(block) - FINGERPRINT_TEMPLATE_LEN + 1, FINGERPRINT_TEMPLATE_LEN):
        t = block[i:i + FINGERPRINT_TEMPLATE_LEN]
        out.append(FingerprintInfo(t[4] == 1, t[5], FINGER_NAMES.get(t[5], "unknown"), t[6]))
    return out
