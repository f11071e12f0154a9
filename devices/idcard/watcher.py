"""Card-inserted and card-removed events from polling find card, as the spec prescribes.

A card is read once per absent-to-present transition; "removed" is reported only after find
fails. Readers that refuse to find a card already read (the spec's "must leave the field")
therefore report "removed" right after the read: to such a reader a card that was read is
gone until it is lifted and laid down again. A port that disappears (USB unplug) is reported
once, reopened every ``reopen_interval`` seconds, and reported again when it is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog

from devices.idcard.errors import (
    FrameError,
    IdCardError,
    NoCardError,
    PortGoneError,
    ReaderTimeout,
    StatusError,
)
from devices.idcard.reader import CardRead, IdCardReader

log = structlog.get_logger("devices.idcard.watcher")


@dataclass(frozen=True)
class ReaderEvent:
    """Base of watcher events."""

    kind = "event"

    def to_json(self, *, unmask: bool = False) -> dict[str, Any]:
        del unmask
        return {"event": self.kind}


@dataclass(frozen=True)
class CardInserted(ReaderEvent):
    """A card was laid on the reader and read."""

    read: CardRead
    kind = "card-inserted"

    def to_json(self, *, unmask: bool = False) -> dict[str, Any]:
        return {"event": self.kind, "card": self.read.to_json(unmask=unmask)}


@dataclass(frozen=True)
class CardRemoved(ReaderEvent):
    """Find card failed after a card had been read."""

    kind = "card-removed"


@dataclass(frozen=True)
class ReadFailed(ReaderEvent):
    """A card was found but could not be read; the next poll tries again."""

    error: IdCardError
    kind = "read-failed"

    def to_json(self, *, unmask: bool = False) -> dict[str, Any]:
        return {"event": self.kind, "error": self.error.kind, "message": str(self.error)}


@dataclass(frozen=True)
class ReaderFault(ReaderEvent):
    """The reader answers but is unwell (e.g. SAM self-test failed); reported once."""

    error: IdCardError
    kind = "reader-fault"

    def to_json(self, *, unmask: bool = False) -> dict[str, Any]:
        return {"event": self.kind, "error": self.error.kind, "message": str(self.error)}


@dataclass(frozen=True)
class DeviceLost(ReaderEvent):
    """The serial port disappeared or cannot be opened."""

    reason: str
    kind = "device-lost"

    def to_json(self, *, unmask: bool = False) -> dict[str, Any]:
        return {"event": self.kind, "message": self.reason}


@dataclass(frozen=True)
class DeviceRestored(ReaderEvent):
    """The serial port is back and answering."""

    kind = "device-restored"


class CardWatcher:
    """Polls a reader and yields ``ReaderEvent``s until the consumer stops iterating."""

    def __init__(self, reader: IdCardReader, *, fingerprint: bool = False) -> None:
        self.reader = reader
        self.fingerprint = fingerprint
        config = reader.config
        self.poll_interval = config.poll_interval
        self.removal_misses = config.removal_misses
        self.reopen_interval = config.reopen_interval

    async def events(self) -> AsyncIterator[ReaderEvent]:
        present = False
        misses = 0
        lost = False
        fault: str | None = None
        while True:
            try:
                if not self.reader.is_open:
                    await self.reader.open()
                try:
                    await self.reader.find_card()
                    found = True
                except NoCardError:
                    found = False
                if lost:
                    lost = False
                    log.info("idcard.device_restored", port=self.reader.port)
                    yield DeviceRestored()
                fault = None
                if found and not present:
                    try:
                        read = await self.reader.read_card(fingerprint=self.fingerprint,
                                                           find=False)
                    except (StatusError, FrameError, ReaderTimeout) as exc:
                        yield ReadFailed(exc)
                    else:
                        present, misses = True, 0
                        yield CardInserted(read)
                elif found:
                    misses = 0
                elif present:
                    misses += 1
                    if misses >= self.removal_misses:
                        present = False
                        yield CardRemoved()
            except PortGoneError as exc:
                await self.reader.close()
                if not lost:
                    lost = True
                    log.warning("idcard.device_lost", port=self.reader.port)
                    if present:
                        present = False
                        yield CardRemoved()
                    yield DeviceLost(str(exc))
                await asyncio.sleep(self.reopen_interval)
                continue
            except (StatusError, FrameError, ReaderTimeout) as exc:
                if fault != exc.kind:
                    fault = exc.kind
                    log.warning("idcard.reader_fault", error=exc.kind)
                    yield ReaderFault(exc)
            await asyncio.sleep(self.poll_interval)
