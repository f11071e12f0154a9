"""Every error the ID card package raises, each with a distinct CLI exit code.

Messages never contain card data: no names, numbers, photo or raw frame bytes.
"""

from __future__ import annotations

from devices.idcard.status import Status, describe


class IdCardError(Exception):
    """Base of all ID card reader errors."""

    exit_code = 19
    kind = "idcard_error"


class FrameError(IdCardError):
    """A frame that does not follow the codec (the parser's own errors)."""

    exit_code = 11
    kind = "frame_error"


class ChecksumError(FrameError):
    """A received frame whose XOR checksum does not match."""

    exit_code = 12
    kind = "checksum_error"


class LengthError(FrameError):
    """A received frame whose LEN field is impossible."""

    exit_code = 13
    kind = "length_error"


class PayloadError(FrameError):
    """A well-formed frame whose data does not have the layout its command promises."""

    exit_code = 14
    kind = "payload_error"


class TransportError(IdCardError):
    """The serial line failed."""

    exit_code = 15
    kind = "transport_error"


class ReaderTimeout(TransportError):
    """No complete reply within the command's timeout."""

    exit_code = 16
    kind = "timeout"


class PortGoneError(TransportError):
    """The serial port cannot be opened, or disappeared (USB unplugged)."""

    exit_code = 17
    kind = "port_gone"


class PhotoDecodeError(IdCardError):
    """The photo decoder plug-in is missing, misconfigured, or failed on this photo."""

    exit_code = 18
    kind = "photo_decode_error"


class StatusError(IdCardError):
    """The reader answered with an SW3 status other than the command's success."""

    kind = "status_error"

    def __init__(self, sw3: int, command: str) -> None:
        self.status: Status = describe(sw3)
        self.sw3 = sw3
        self.command = command
        super().__init__(f"{command}: {self.status.message} ({self.status.message_zh}; "
                         f"SW3=0x{sw3:02X})")

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return self.status.exit_code


class NoCardError(StatusError):
    """Find card answered SW3 0x80: no card in the field."""


class SamSelfTestError(StatusError):
    """SW3 0x60: the SAM failed its self-test."""


def status_error(sw3: int, command: str) -> StatusError:
    """The most specific StatusError for an SW3 value."""
    from devices.idcard import status

    if sw3 == status.NO_CARD:
        return NoCardError(sw3, command)
    if sw3 == status.SAM_SELF_TEST_FAILED:
        return SamSelfTestError(sw3, command)
    return StatusError(sw3, command)
