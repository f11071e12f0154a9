"""Property-based tests of the stream parser (hypothesis)."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.idcard.errors import FrameError
from devices.idcard.frames import PREAMBLE, FrameParser, Response

SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _drain(parser: FrameParser, out: list[bytes]) -> None:
    """Pop until the parser needs more bytes; only the codec's own errors may appear."""
    for _ in range(10_000):
        try:
            body = parser.pop()
        except FrameError:
            continue
        if body is None:
            return
        out.append(body)
    raise AssertionError("parser did not settle")


def _feed_split(stream: bytes, cuts: list[int]) -> list[bytes]:
    parser = FrameParser()
    frames: list[bytes] = []
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for a, b in itertools.pairwise(points):
        parser.feed(stream[a:b])
        _drain(parser, frames)
    assert parser.buffered <= len(stream)
    return frames


# bytes biased towards the preamble's values, so that look-alike headers appear often
noisy_bytes = st.lists(
    st.one_of(st.integers(0, 255), st.sampled_from([0xAA, 0x96, 0x69, 0x00])),
    max_size=300,
).map(bytes)
fragments = st.lists(
    st.one_of(noisy_bytes, st.just(PREAMBLE), st.sampled_from(
        [PREAMBLE[:n] for n in range(1, 5)])),
    max_size=8,
).map(b"".join)
responses = st.builds(
    Response,
    st.integers(0, 255), st.integers(0, 255), st.integers(0, 255),
    st.binary(max_size=1400),
)
cuts = st.lists(st.integers(0, 10_000), max_size=20)


@SETTINGS
@given(stream=fragments, split=cuts)
def test_any_stream_split_anywhere_raises_only_codec_errors(stream: bytes,
                                                            split: list[int]) -> None:
    _feed_split(stream, split)


@SETTINGS
@given(garbage=noisy_bytes, response=responses, split=cuts)
def test_a_valid_frame_after_preamble_free_garbage_is_never_lost(
        garbage: bytes, response: Response, split: list[int]) -> None:
    garbage = garbage.replace(PREAMBLE, b"")
    frames = _feed_split(garbage + response.encode(), split)
    body = response.encode()[7:-1]
    assert frames and frames[-1] == body


@SETTINGS
@given(junk=fragments, response=responses, split=cuts, tail=st.binary(max_size=20))
def test_a_valid_frame_after_broken_frames_is_recovered(
        junk: bytes, response: Response, split: list[int], tail: bytes) -> None:
    # broken frames of every kind: bad checksum, impossible length, truncated (declaring more
    # bytes than the whole stream holds), each followed by the valid frame
    good = response.encode()
    bad_checksum = good[:-1] + bytes([good[-1] ^ 0xFF])
    too_long = PREAMBLE + (0xFFFF).to_bytes(2, "big")
    truncated = PREAMBLE + (4000).to_bytes(2, "big") + junk[:10]
    stream = junk.replace(PREAMBLE, b"") + bad_checksum + too_long + truncated + good
    frames = _feed_split(stream + tail.replace(PREAMBLE[:1], b""), split)
    assert good[7:-1] in frames


@SETTINGS
@given(responses_=st.lists(responses, min_size=1, max_size=5), split=cuts)
def test_back_to_back_frames_come_out_in_order(responses_: list[Response],
                                               split: list[int]) -> None:
    stream = b"".join(r.encode() for r in responses_)
    frames = _feed_split(stream, split)
    assert [Response.from_body(f) for f in frames] == responses_
