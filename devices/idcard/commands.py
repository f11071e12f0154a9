"""The spec's command table: each command's CMD, PARA, success status and timeout class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from devices.idcard import status
from devices.idcard.frames import Request

TimeoutClass = Literal["control", "find", "select", "read", "read_fingerprint"]


@dataclass(frozen=True)
class Command:
    """One row of the command table."""

    name: str
    """Stable identifier, used in logs, errors and JSON."""
    cmd: int
    """CMD byte."""
    para: int
    """PARA byte (for set-baud-rate, the default; the real one comes per call)."""
    success: frozenset[int]
    """SW3 values that mean the command succeeded."""
    timeout: TimeoutClass
    """Which configured timeout applies."""

    def request(self, data: bytes = b"", para: int | None = None) -> Request:
        """The request frame for this command."""
        return Request(self.cmd, self.para if para is None else para, data)


_OK = frozenset({status.SUCCESS})

RESET_SAM = Command("reset_sam", 0x10, 0xFF, _OK, "control")
SAM_STATUS = Command("sam_status", 0x11, 0xFF, _OK, "control")
READ_SAM_ID = Command("read_sam_id", 0x12, 0xFF, _OK, "control")
FIND_CARD = Command("find_card", 0x20, 0x01, frozenset({status.FIND_OK}), "find")
SELECT_CARD = Command("select_card", 0x20, 0x02, _OK, "select")
READ_BASE_INFO = Command("read_base_info", 0x30, 0x01, _OK, "read")
READ_BASE_INFO_FINGERPRINT = Command("read_base_info_fingerprint", 0x30, 0x10, _OK,
                                     "read_fingerprint")
READ_NEWEST_ADDRESS = Command("read_newest_address", 0x30, 0x03, _OK, "read")
SET_BAUD_RATE = Command("set_baud_rate", 0x60, 0x00, _OK, "control")
SET_MAX_RF_FRAME = Command("set_max_rf_frame", 0x61, 0xFF, _OK, "control")

ALL: tuple[Command, ...] = (
    RESET_SAM, SAM_STATUS, READ_SAM_ID, FIND_CARD, SELECT_CARD, READ_BASE_INFO,
    READ_BASE_INFO_FINGERPRINT, READ_NEWEST_ADDRESS, SET_BAUD_RATE, SET_MAX_RF_FRAME,
)
BY_CODE: dict[tuple[int, int], Command] = {
    (c.cmd, c.para): c for c in ALL if c is not SET_BAUD_RATE
}

BAUD_CODES: dict[int, int] = {115200: 0x00, 57600: 0x01, 38400: 0x02, 19200: 0x03, 9600: 0x04}
"""PARA of ``60 pp`` for each line rate."""
BAUD_BY_CODE: dict[int, int] = {v: k for k, v in BAUD_CODES.items()}


def identify(request: Request) -> Command | None:
    """The command a request frame carries, or None for one not in the table."""
    if request.cmd == SET_BAUD_RATE.cmd:
        return SET_BAUD_RATE
    return BY_CODE.get((request.cmd, request.para))
