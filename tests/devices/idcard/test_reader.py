"""The real driver through a pty against the SIMULATED reader: commands, card types, faults."""

from __future__ import annotations

import asyncio
import time

import pytest

from devices.idcard import status
from devices.idcard.cards import load_card, sample_names
from devices.idcard.cardtext import CardType
from devices.idcard.errors import (
    ChecksumError,
    NoCardError,
    PortGoneError,
    ReaderTimeout,
    SamSelfTestError,
    StatusError,
)
from devices.idcard.photo import SimulatedPhotoDecoder
from devices.idcard.reader import IdCardReader, ReaderConfig
from devices.idcard.simulator import DEFAULT_SAM_ID, Fault, VirtualReader


def _no_retry(config: ReaderConfig) -> ReaderConfig:
    return config.model_copy(update={"retries": 0})


async def test_sam_commands(sim: VirtualReader, config: ReaderConfig) -> None:
    async with IdCardReader(config) as reader:
        await reader.reset_sam()
        await reader.sam_status()
        sam = await reader.sam_id()
    assert sam == DEFAULT_SAM_ID
    assert str(sam) == "05.01-20260101-3200000001-0001234567"


@pytest.mark.parametrize("sample", sample_names())
async def test_each_card_type_reads_whole(sim: VirtualReader, config: ReaderConfig,
                                          sample: str) -> None:
    card = load_card(sample)
    sim.insert(card)
    async with IdCardReader(config, SimulatedPhotoDecoder()) as reader:
        result = await reader.read_card()
    assert result.card.card_type is card.card_type
    assert result.card.id_number_valid is True
    assert result.photo.decoded and result.photo.simulated
    assert result.decoded_photo is not None and result.decoded_photo.bgr.shape == (126, 102, 3)
    assert result.photo.bytes == 1024
    assert result.fingerprints is None
    t = result.timings
    assert t.find_ms > 0 and t.select_ms > 0 and t.read_ms > 0
    assert t.total_ms == pytest.approx(t.find_ms + t.select_ms + t.read_ms, abs=0.5)


async def test_read_with_fingerprints(sim: VirtualReader, config: ReaderConfig) -> None:
    async with IdCardReader(config) as reader:
        result = await reader.read_card(fingerprint=True)
    assert result.fingerprints is not None
    assert [(f.finger, f.quality, f.enrolled) for f in result.fingerprints] == [
        ("right thumb", 86, True), ("left index", 72, True)]
    assert result.fingerprint_block is not None and len(result.fingerprint_block) == 1024
    assert result.card.card_type is CardType.RESIDENT


async def test_read_without_decoder_says_why(sim: VirtualReader, config: ReaderConfig) -> None:
    async with IdCardReader(config) as reader:
        result = await reader.read_card()
    assert not result.photo.decoded
    assert result.photo.reason and "no photo decoder configured" in result.photo.reason
    assert result.card.name == "沈德顺"


async def test_newest_address_present_and_absent(sim: VirtualReader,
                                                 config: ReaderConfig) -> None:
    async with IdCardReader(config) as reader:
        assert await reader.read_newest_address() == "江苏省苏州市吴江区盛泽镇西白洋村5组12号"
        sim.insert(load_card("resident"))
        assert await reader.read_newest_address() is None


async def test_no_card_is_a_distinct_error(sim: VirtualReader, config: ReaderConfig) -> None:
    sim.remove()
    async with IdCardReader(config) as reader:
        with pytest.raises(NoCardError) as err:
            await reader.read_card()
    assert err.value.sw3 == status.NO_CARD
    assert "no card on the reader" in str(err.value)


async def test_card_must_leave_the_field_before_it_is_found_again(
        sim: VirtualReader, config: ReaderConfig) -> None:
    async with IdCardReader(config) as reader:
        await reader.read_card()
        with pytest.raises(NoCardError):
            await reader.find_card()
        sim.remove()
        sim.insert(load_card("resident-elderly"))
        await reader.read_card()


async def test_set_baud_rate_reopens_and_paces_slower(sim: VirtualReader,
                                                      config: ReaderConfig) -> None:
    slow = config.model_copy(update={"timeouts": config.timeouts.model_copy(
        update={"read": 3.0})})
    async with IdCardReader(slow) as reader:
        fast = (await reader.read_card()).timings.read_ms
        await reader.set_baud_rate(38400)
        assert reader.baud == 38400
        # the simulated reader switches after its reply has gone out, on its own thread
        for _ in range(100):
            if sim.baud == 38400:
                break
            await asyncio.sleep(0.01)
        assert sim.baud == 38400
        sim.remove()
        sim.insert(load_card("resident-elderly"))
        slower = (await reader.read_card()).timings.read_ms
        await reader.set_baud_rate(115200)
    # 1295 bytes at 38400 baud take ~337 ms on the wire against ~112 ms at 115200
    assert slower > 2.5 * fast


async def test_set_max_rf_frame(sim: VirtualReader, config: ReaderConfig) -> None:
    async with IdCardReader(config) as reader:
        await reader.set_max_rf_frame(0x50)
        with pytest.raises(ValueError):
            await reader.set_max_rf_frame(0)
    assert sim.max_rf_frame == 0x50


async def test_bad_checksum_is_retried_then_reported(sim: VirtualReader,
                                                     config: ReaderConfig) -> None:
    sim.inject(Fault.BAD_CHECKSUM, 1)
    async with IdCardReader(config) as reader:
        assert (await reader.read_card()).card.name == "沈德顺"
    sim.remove()
    sim.insert(load_card("resident-elderly"))
    sim.inject(Fault.BAD_CHECKSUM, 1)
    async with IdCardReader(_no_retry(config)) as reader:
        with pytest.raises(ChecksumError):
            await reader.find_card()


async def test_truncated_reply_times_out_within_its_timeout(sim: VirtualReader,
                                                            config: ReaderConfig) -> None:
    sim.inject(Fault.TRUNCATED, 1)
    async with IdCardReader(_no_retry(config)) as reader:
        started = time.monotonic()
        with pytest.raises(ReaderTimeout, match="partial reply"):
            await reader.find_card()
        elapsed = time.monotonic() - started
    assert config.timeouts.find <= elapsed < config.timeouts.find + 0.3


async def test_truncated_read_never_yields_a_partial_card(sim: VirtualReader,
                                                          config: ReaderConfig) -> None:
    sim.inject(Fault.TRUNCATED, None)
    async with IdCardReader(config) as reader:
        with pytest.raises(ReaderTimeout):
            await reader.read_card()


async def test_garbage_before_replies_is_skipped(sim: VirtualReader,
                                                 config: ReaderConfig) -> None:
    sim.inject(Fault.GARBAGE, None)
    async with IdCardReader(_no_retry(config)) as reader:
        result = await reader.read_card()
    assert result.card.id_number == "32050919490312001X"


async def test_reply_split_into_small_chunks_is_reassembled(sim: VirtualReader,
                                                            config: ReaderConfig) -> None:
    sim.inject(Fault.SPLIT, None)
    long_read = config.model_copy(update={"retries": 0, "timeouts": config.timeouts.model_copy(
        update={"read": 5.0})})
    async with IdCardReader(long_read) as reader:
        result = await reader.read_card()
    assert result.card.name == "沈德顺"


async def test_stalled_reply_times_out_and_retry_recovers(sim: VirtualReader,
                                                          config: ReaderConfig) -> None:
    sim.inject(Fault.STALL, 1)
    async with IdCardReader(config) as reader:
        started = time.monotonic()
        await reader.sam_status()
        elapsed = time.monotonic() - started
    assert config.timeouts.control <= elapsed < 2 * config.timeouts.control + 0.3
    sim.inject(Fault.STALL, None)
    async with IdCardReader(_no_retry(config)) as reader:
        with pytest.raises(ReaderTimeout, match="no bytes"):
            await reader.sam_status()


async def test_sam_self_test_failure(sim: VirtualReader, config: ReaderConfig) -> None:
    sim.inject(Fault.SAM_FAILURE, None)
    async with IdCardReader(config) as reader:
        with pytest.raises(SamSelfTestError) as err:
            await reader.sam_status()
        assert err.value.exit_code == 42
        with pytest.raises(StatusError) as err2:
            await reader.read_card()
        assert err2.value.sw3 == status.SAM_SELF_TEST_FAILED
    sim.clear_faults()


async def test_no_card_fault_and_read_failure(sim: VirtualReader, config: ReaderConfig) -> None:
    sim.inject(Fault.NO_CARD, 1)
    sim.inject(Fault.READ_FAILURE, 1)
    async with IdCardReader(config) as reader:
        with pytest.raises(NoCardError):
            await reader.read_card()
        with pytest.raises(StatusError) as err:
            await reader.read_card()
        assert err.value.sw3 == status.READ_FAILED
        assert (await reader.read_card()).card.name == "沈德顺"


async def test_distinct_exit_codes_for_each_status() -> None:
    codes = [status.describe(c).exit_code for c in status.STATUSES
             if c not in (status.SUCCESS, status.FIND_OK)]
    assert len(codes) == len(set(codes))
    assert status.describe(0x77).name == "unknown_77"


async def test_port_disappearing_mid_session(sim: VirtualReader, config: ReaderConfig) -> None:
    async with IdCardReader(_no_retry(config)) as reader:
        await reader.sam_status()
        sim.unplug()
        with pytest.raises(PortGoneError):
            await reader.sam_status()
        assert not reader.is_open
        with pytest.raises(PortGoneError, match="cannot open"):
            await reader.sam_status()
        sim.replug()
        await reader.sam_status()  # reopens by itself at the same (link) path


async def test_port_disappearing_during_a_long_read(sim: VirtualReader,
                                                    config: ReaderConfig) -> None:
    async with IdCardReader(_no_retry(config)) as reader:
        task = asyncio.create_task(reader.read_card())
        await asyncio.sleep(0.05)  # find and select are done, the base info is on the wire
        sim.unplug()
        with pytest.raises((PortGoneError, ReaderTimeout)):
            await task
    sim.replug()


async def test_event_loop_keeps_running_during_a_read(sim: VirtualReader,
                                                      config: ReaderConfig) -> None:
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    async with IdCardReader(config, SimulatedPhotoDecoder()) as reader:
        await reader.read_card(fingerprint=True)
    task.cancel()
    assert len(gaps) > 20
    assert max(gaps) < 0.1, "the event loop was blocked during the read"


async def test_missing_port_in_config_is_a_clear_error() -> None:
    with pytest.raises(PortGoneError, match="no serial port configured"):
        IdCardReader(ReaderConfig())


async def test_reader_rejects_a_frame_it_cannot_check(sim: VirtualReader,
                                                      config: ReaderConfig) -> None:
    # a host frame with a wrong checksum gets SW3 0x10 from the reader, which is retried
    import serial

    port = serial.Serial(sim.path, 115200, timeout=1)
    try:
        port.write(bytes.fromhex("AA AA AA 96 69 00 03 11 FF 00"))
        reply = port.read(11)
    finally:
        port.close()
    assert reply == bytes.fromhex("AA AA AA 96 69 00 04 00 00 10 14")
    assert sim.stats.bad_requests == 1
