"""The frame codec against the spec's computed frames, and the parser's resynchronisation."""

from __future__ import annotations

import pytest

from devices.idcard import commands
from devices.idcard.errors import ChecksumError, LengthError, PayloadError
from devices.idcard.frames import PREAMBLE, FrameParser, Request, Response, checksum

SPEC_REQUESTS = {
    commands.RESET_SAM: "AA AA AA 96 69 00 03 10 FF EC",
    commands.SAM_STATUS: "AA AA AA 96 69 00 03 11 FF ED",
    commands.READ_SAM_ID: "AA AA AA 96 69 00 03 12 FF EE",
    commands.FIND_CARD: "AA AA AA 96 69 00 03 20 01 22",
    commands.SELECT_CARD: "AA AA AA 96 69 00 03 20 02 21",
    commands.READ_BASE_INFO: "AA AA AA 96 69 00 03 30 01 32",
    commands.READ_BASE_INFO_FINGERPRINT: "AA AA AA 96 69 00 03 30 10 23",
    commands.READ_NEWEST_ADDRESS: "AA AA AA 96 69 00 03 30 03 30",
}


@pytest.mark.parametrize(("command", "expected"), SPEC_REQUESTS.items(),
                         ids=[c.name for c in SPEC_REQUESTS])
def test_request_frames_match_the_spec_table(command: commands.Command, expected: str) -> None:
    assert command.request().encode() == bytes.fromhex(expected)


def test_set_baud_and_max_rf_frames_match_the_spec() -> None:
    for pp in range(5):
        frame = commands.SET_BAUD_RATE.request(para=pp).encode()
        assert frame == bytes.fromhex(f"AA AA AA 96 69 00 03 60 {pp:02X} {0x63 ^ pp:02X}")
    assert commands.SET_MAX_RF_FRAME.request(b"\x50").encode() == bytes.fromhex(
        "AA AA AA 96 69 00 04 61 FF 50 CA")


def test_sam_status_success_reply_decodes() -> None:
    parser = FrameParser()
    parser.feed(bytes.fromhex("AA AA AA 96 69 00 04 00 00 90 94"))
    body = parser.pop()
    assert body is not None
    assert Response.from_body(body) == Response(0, 0, 0x90)


def test_response_round_trip_with_data() -> None:
    frame = Response(0, 0, 0x9F, b"\x00\x00\x00\x00").encode()
    assert frame[5:7] == (4 + 4).to_bytes(2, "big")  # LEN = n + 4
    assert len(frame) == 8 + 7
    assert frame[-1] == checksum(frame[5:-1])


def test_parser_skips_garbage_before_a_frame() -> None:
    parser = FrameParser()
    frame = Response(0, 0, 0x90).encode()
    parser.feed(b"\x00\x13\xaa\xaa\x96" + frame)
    assert parser.pop() == b"\x00\x00\x90"
    assert parser.skipped == 5
    assert parser.pop() is None


def test_parser_reports_bad_checksum_then_recovers_the_next_frame() -> None:
    good = Response(0, 0, 0x90, b"hello").encode()
    bad = good[:-1] + bytes([good[-1] ^ 1])
    parser = FrameParser()
    parser.feed(bad + good)
    with pytest.raises(ChecksumError):
        parser.pop()
    assert parser.pop() == b"\x00\x00\x90hello"


def test_parser_refuses_impossible_length_and_goes_on() -> None:
    parser = FrameParser()
    good = Response(0, 0, 0x80).encode()
    parser.feed(PREAMBLE + b"\xff\xff" + good)
    with pytest.raises(LengthError):
        parser.pop()
    assert parser.pop() == b"\x00\x00\x80"


def test_parser_prefers_a_complete_frame_after_a_truncated_one() -> None:
    truncated = Response(0, 0, 0x90, bytes(100)).encode()[:40]
    good = Response(0, 0, 0x9F, b"\x01\x02\x03\x04").encode()
    parser = FrameParser()
    parser.feed(truncated + good)
    assert parser.pop() == b"\x00\x00\x9f\x01\x02\x03\x04"


def test_parser_finds_a_frame_that_starts_inside_a_bad_one() -> None:
    good = Response(0, 0, 0x90, b"xy").encode()
    # a bogus header whose declared length swallows the good frame, with a wrong checksum
    bogus = PREAMBLE + (len(good) + 2).to_bytes(2, "big")
    stream = bogus + good + b"\x00\x00"
    parser = FrameParser()
    parser.feed(stream)
    frames = []
    for _ in range(10):
        try:
            body = parser.pop()
        except ChecksumError:
            continue
        if body is None:
            break
        frames.append(body)
    assert b"\x00\x00\x90xy" in frames


def test_needed_asks_for_the_rest_of_a_frame() -> None:
    frame = Response(0, 0, 0x90, bytes(1000)).encode()
    parser = FrameParser()
    assert parser.needed() == 7
    parser.feed(frame[:7])
    assert parser.needed() == len(frame) - 7
    parser.feed(frame[7:-1])
    assert parser.needed() == 1


def test_short_bodies_are_payload_errors() -> None:
    with pytest.raises(PayloadError):
        Response.from_body(b"\x00\x00")
    with pytest.raises(PayloadError):
        Request.from_body(b"\x10")
