"""SW3, the reader/SAM status byte of every response, and what each value means."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Status:
    """One SW3 value of the spec's table."""

    code: int
    """The SW3 byte."""
    name: str
    """A stable identifier, used in JSON output."""
    message: str
    """What it means, for a technician."""
    message_zh: str
    """The same in Chinese."""
    exit_code: int
    """The exit code of a CLI command that ends on this status."""


SUCCESS = 0x90
FIND_OK = 0x9F
NO_CONTENT = 0x91
RECEIVED_CHECKSUM_ERROR = 0x10
RECEIVED_LENGTH_ERROR = 0x11
COMMAND_ERROR = 0x21
UNAUTHORISED_OPERATION = 0x23
UNRECOGNISED_ERROR = 0x24
CARD_AUTH_SAM_FAILED = 0x31
SAM_AUTH_CARD_FAILED = 0x32
VERIFICATION_ERROR = 0x33
UNRECOGNISED_CARD_TYPE = 0x40
READ_FAILED = 0x41
RANDOM_NUMBER_FAILED = 0x47
SAM_SELF_TEST_FAILED = 0x60
SAM_NOT_AUTHORISED = 0x66
NO_CARD = 0x80
SELECT_FAILED = 0x81

_TABLE = [
    Status(SUCCESS, "success", "success", "成功", 0),
    Status(FIND_OK, "find_ok", "card found", "找卡成功", 0),
    Status(NO_CONTENT, "no_content", "this item has no content on the card", "此项无内容", 30),
    Status(RECEIVED_CHECKSUM_ERROR, "reader_checksum_error",
           "the reader received a frame with a bad checksum", "读卡器收到的数据校验和错", 31),
    Status(RECEIVED_LENGTH_ERROR, "reader_length_error",
           "the reader received a frame with a bad length", "读卡器收到的数据长度错", 32),
    Status(COMMAND_ERROR, "command_error",
           "the reader refused the command (bad value or combination)", "命令错误", 33),
    Status(UNAUTHORISED_OPERATION, "unauthorised_operation",
           "unauthorised operation", "越权操作", 34),
    Status(UNRECOGNISED_ERROR, "unrecognised_error", "the reader reported an unrecognised error",
           "无法识别的错误", 35),
    Status(CARD_AUTH_SAM_FAILED, "card_auth_sam_failed", "the card failed to authenticate the SAM",
           "卡认证机具失败", 36),
    Status(SAM_AUTH_CARD_FAILED, "sam_auth_card_failed", "the SAM failed to authenticate the card",
           "机具认证卡失败", 37),
    Status(VERIFICATION_ERROR, "verification_error", "information verification error",
           "信息验证错误", 38),
    Status(UNRECOGNISED_CARD_TYPE, "unrecognised_card_type", "unrecognised card type",
           "无法识别的卡类型", 39),
    Status(READ_FAILED, "read_failed", "reading the card failed (hold it still on the reader)",
           "读卡操作失败", 40),
    Status(RANDOM_NUMBER_FAILED, "random_number_failed", "getting a random number failed",
           "取随机数失败", 41),
    Status(SAM_SELF_TEST_FAILED, "sam_self_test_failed",
           "the SAM failed its self-test and accepts no commands (reset or replace the reader)",
           "SAM自检失败，不能接收命令", 42),
    Status(SAM_NOT_AUTHORISED, "sam_not_authorised", "the SAM is not authorised",
           "SAM未经授权", 43),
    Status(NO_CARD, "no_card", "no card on the reader", "未找到卡", 44),
    Status(SELECT_FAILED, "select_failed",
           "selecting the card failed (hold it still on the reader)", "选卡失败", 45),
]

STATUSES: dict[int, Status] = {s.code: s for s in _TABLE}

UNKNOWN_EXIT_CODE = 46


def describe(code: int) -> Status:
    """The table entry for an SW3 value; unknown values get a generic entry."""
    known = STATUSES.get(code)
    if known is not None:
        return known
    return Status(code, f"unknown_{code:02x}", f"unknown reader status 0x{code:02X}",
                  f"未知状态 0x{code:02X}", UNKNOWN_EXIT_CODE)
