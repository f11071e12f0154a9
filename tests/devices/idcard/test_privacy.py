"""Reads, failures and watcher events log neither names nor full ID numbers."""

from __future__ import annotations

import asyncio
import io

from devices.idcard.cards import load_card
from devices.idcard.errors import IdCardError
from devices.idcard.photo import SimulatedPhotoDecoder
from devices.idcard.reader import IdCardReader, ReaderConfig
from devices.idcard.simulator import Fault, VirtualReader
from devices.idcard.watcher import CardWatcher


def _personal_strings(sample: str) -> list[str]:
    card = load_card(sample)
    values = [v for k, v in card.fields.items()
              if k in ("name", "chinese_name", "english_name", "id_number", "address",
                       "permanent_residence_number", "travel_permit_number")]
    out = []
    for v in values:
        out += [v, v.encode("utf-16-le").hex(), v.encode("utf-16-le").hex(" ").upper()]
    return out


async def test_a_read_logs_no_name_and_no_full_id_number(
        sim: VirtualReader, config: ReaderConfig, log_stream: io.StringIO) -> None:
    async with IdCardReader(config, SimulatedPhotoDecoder()) as reader:
        for sample in ("resident-elderly", "hk-macao-taiwan", "foreign-permanent-2017"):
            sim.remove()
            sim.insert(load_card(sample))
            await reader.read_card(fingerprint=True)
        await reader.read_newest_address()
    text = log_stream.getvalue()
    assert "idcard.card_read" in text, "the test must see the read's log lines"
    for sample in ("resident-elderly", "hk-macao-taiwan", "foreign-permanent-2017"):
        for secret in _personal_strings(sample):
            assert secret not in text


async def test_failures_and_watch_events_log_no_personal_data(
        sim: VirtualReader, config: ReaderConfig, log_stream: io.StringIO) -> None:
    sim.reread = "stays"
    sim.inject(Fault.BAD_CHECKSUM, 1)
    sim.inject(Fault.READ_FAILURE, 1)
    reader = IdCardReader(config, SimulatedPhotoDecoder())
    seen = []
    async def watch() -> None:
        async for event in CardWatcher(reader).events():
            seen.append(event)
            if event.kind == "card-inserted":
                return
    await asyncio.wait_for(watch(), 5)
    sim.inject(Fault.TRUNCATED, None)
    try:
        await reader.read_card()
    except IdCardError as exc:
        assert all(s not in str(exc) for s in _personal_strings("resident-elderly"))
    await reader.aclose()
    text = log_stream.getvalue()
    assert "idcard.command_failed" in text
    for secret in _personal_strings("resident-elderly"):
        assert secret not in text


def test_redaction_is_a_second_line_of_defence(log_stream: io.StringIO) -> None:
    import structlog

    structlog.get_logger("t").warning("oops 32050919490312001X seen", name="沈德顺",
                                      detail="id 32050919490312001X")
    text = log_stream.getvalue()
    assert "沈德顺" not in text and "32050919490312001X" not in text
    assert "320509********001X" in text
