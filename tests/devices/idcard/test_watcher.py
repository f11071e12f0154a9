"""Card-inserted/removed events, reading once per insertion, and surviving a USB unplug."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from devices.idcard.cards import load_card
from devices.idcard.reader import IdCardReader, ReaderConfig
from devices.idcard.simulator import Fault, VirtualReader
from devices.idcard.watcher import (
    CardInserted,
    CardRemoved,
    CardWatcher,
    DeviceLost,
    DeviceRestored,
    ReaderEvent,
    ReaderFault,
    ReadFailed,
)


class Events:
    """Collects a watcher's events in the background for a test to wait on."""

    def __init__(self, watcher: CardWatcher) -> None:
        self.items: list[ReaderEvent] = []
        self._new = asyncio.Condition()
        self._task = asyncio.create_task(self._collect(watcher.events()))

    async def _collect(self, source: AsyncIterator[ReaderEvent]) -> None:
        async for event in source:
            async with self._new:
                self.items.append(event)
                self._new.notify_all()

    async def wait_for(self, kind: type[ReaderEvent], count: int = 1,
                       timeout: float = 5.0) -> list[ReaderEvent]:
        async def enough() -> None:
            async with self._new:
                await self._new.wait_for(
                    lambda: sum(isinstance(e, kind) for e in self.items) >= count)
        await asyncio.wait_for(enough(), timeout)
        return [e for e in self.items if isinstance(e, kind)]

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@pytest.fixture
async def reader(config: ReaderConfig) -> AsyncIterator[IdCardReader]:
    r = IdCardReader(config)
    yield r
    await r.aclose()


async def test_insert_reads_once_and_removal_is_reported(sim: VirtualReader,
                                                         reader: IdCardReader) -> None:
    sim.reread = "stays"
    events = Events(CardWatcher(reader))
    inserted = await events.wait_for(CardInserted)
    assert isinstance(inserted[0], CardInserted)
    assert inserted[0].read.card.name == "沈德顺"
    await asyncio.sleep(0.4)  # several polls with the card still on the reader
    assert sim.stats.reads == 1
    sim.remove()
    await events.wait_for(CardRemoved)
    sim.insert(load_card("hk-macao-taiwan"))
    second = await events.wait_for(CardInserted, 2)
    assert isinstance(second[1], CardInserted)
    assert second[1].read.card.card_type.value == "hk_macao_taiwan"
    assert sim.stats.reads == 2
    await events.stop()
    kinds = [e.kind for e in events.items]
    assert kinds == ["card-inserted", "card-removed", "card-inserted"]


async def test_spec_reader_reports_removal_after_the_read(sim: VirtualReader,
                                                          reader: IdCardReader) -> None:
    # the spec's behaviour: a card already read is not found until laid down again
    events = Events(CardWatcher(reader))
    await events.wait_for(CardRemoved)
    await asyncio.sleep(0.3)
    assert sim.stats.reads == 1
    sim.remove()
    sim.insert(load_card("resident"))
    await events.wait_for(CardInserted, 2)
    assert sim.stats.reads == 2
    await events.stop()


async def test_failed_read_is_reported_and_retried(sim: VirtualReader,
                                                   reader: IdCardReader) -> None:
    sim.inject(Fault.READ_FAILURE, 1)
    events = Events(CardWatcher(reader))
    failed = await events.wait_for(ReadFailed)
    assert isinstance(failed[0], ReadFailed)
    assert failed[0].to_json()["error"] == "status_error"
    await events.wait_for(CardInserted)
    await events.stop()


async def test_sam_failure_is_one_fault_event(sim: VirtualReader,
                                              reader: IdCardReader) -> None:
    sim.remove()
    sim.inject(Fault.SAM_FAILURE, None)
    events = Events(CardWatcher(reader))
    await events.wait_for(ReaderFault)
    await asyncio.sleep(0.3)
    assert sum(isinstance(e, ReaderFault) for e in events.items) == 1
    await events.stop()


async def test_unplug_and_replug_are_reported_and_the_card_is_read_again(
        sim: VirtualReader, reader: IdCardReader) -> None:
    sim.reread = "stays"
    events = Events(CardWatcher(reader))
    await events.wait_for(CardInserted)
    sim.unplug()
    lost = await events.wait_for(DeviceLost)
    assert "ttyIDCARD" in lost[0].to_json()["message"]
    await events.wait_for(CardRemoved)
    await asyncio.sleep(0.3)
    assert sum(isinstance(e, DeviceLost) for e in events.items) == 1  # reported once
    sim.replug()
    await events.wait_for(DeviceRestored)
    await events.wait_for(CardInserted, 2)
    await events.stop()
    kinds = [e.kind for e in events.items]
    assert kinds == ["card-inserted", "card-removed", "device-lost", "device-restored",
                     "card-inserted"]


async def test_watcher_starts_with_the_device_absent(sim: VirtualReader,
                                                     reader: IdCardReader) -> None:
    sim.unplug()
    events = Events(CardWatcher(reader))
    await events.wait_for(DeviceLost)
    sim.replug()
    await events.wait_for(DeviceRestored)
    await events.wait_for(CardInserted)
    await events.stop()
