"""The reader driver: GA 467 commands over pyserial, without ever blocking the event loop.

All serial I/O runs on one worker thread per reader (a serial port is not shared between
commands), and every wait is bounded by the command's configured timeout. A failed read raises
and never yields a partial card.
"""

from __future__ import annotations

import asyncio
import contextlib
import termios
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import serial
import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator

from devices.idcard import commands, status
from devices.idcard.cardtext import IdCard, decode_text, mask_name
from devices.idcard.commands import Command
from devices.idcard.errors import (
    ChecksumError,
    FrameError,
    PhotoDecodeError,
    PortGoneError,
    ReaderTimeout,
    StatusError,
    status_error,
)
from devices.idcard.frames import MAX_LEN, FrameParser, Response
from devices.idcard.idnumber import mask as mask_id
from devices.idcard.payloads import (
    FingerprintInfo,
    SamId,
    parse_base_info,
    parse_fingerprints,
    parse_newest_address,
    parse_sam_id,
)
from devices.idcard.photo import DecodedPhoto, PhotoDecoder, PhotoDecoderConfig, PhotoInfo
from devices.idcard.photo import describe as describe_photo
from devices.idcard.photo import is_simulated as is_simulated_photo

log = structlog.get_logger("devices.idcard")


class ReaderTimeouts(BaseModel):
    """Seconds to wait for a complete reply, per command class."""

    model_config = ConfigDict(extra="forbid")

    control: float = Field(1.0, gt=0, le=30)
    find: float = Field(0.8, gt=0, le=30)
    select: float = Field(0.8, gt=0, le=30)
    read: float = Field(2.0, gt=0, le=30)
    read_fingerprint: float = Field(3.0, gt=0, le=30)


class ReaderConfig(BaseModel):
    """``[idcard]`` in a component's config file."""

    model_config = ConfigDict(extra="forbid")

    port: str | None = Field(None, description="serial device, e.g. /dev/ttyUSB0 or a udev link")
    baud: int = 115200
    timeouts: ReaderTimeouts = Field(default_factory=ReaderTimeouts)
    retries: int = Field(1, ge=0, le=5, description="re-sends after a timeout or bad frame")
    poll_interval: float = Field(0.5, gt=0, le=10, description="watcher: seconds between finds")
    removal_misses: int = Field(1, ge=1, le=10,
                                description="watcher: failed finds before 'card removed'")
    reopen_interval: float = Field(1.0, gt=0, le=60,
                                   description="watcher: seconds between reopen attempts")
    photo_decoder: PhotoDecoderConfig = Field(default_factory=PhotoDecoderConfig)

    @field_validator("baud")
    @classmethod
    def _known_baud(cls, value: int) -> int:
        if value not in commands.BAUD_CODES:
            raise ValueError(f"must be one of {sorted(commands.BAUD_CODES)}")
        return value


@dataclass(frozen=True)
class Timings:
    """Milliseconds spent in each step of a card read."""

    find_ms: float
    select_ms: float
    read_ms: float
    total_ms: float


@dataclass(frozen=True)
class CardRead:
    """One successful read: the decoded card, its photo and fingerprint descriptions."""

    card: IdCard
    photo_wlt: bytes = field(repr=False)
    photo: PhotoInfo
    decoded_photo: DecodedPhoto | None = field(repr=False)
    fingerprints: list[FingerprintInfo] | None
    fingerprint_block: bytes | None = field(repr=False)
    timings: Timings

    def to_json(self, *, unmask: bool = False) -> dict[str, Any]:
        """The CLI's JSON object; personal fields masked unless ``unmask``."""
        data = self.card.model_dump(mode="json")
        if not unmask:
            data.update(masked_card_fields(self.card))
        data["photo"] = self.photo.model_dump(mode="json")
        data["fingerprints"] = (None if self.fingerprints is None else
                                [vars(f) for f in self.fingerprints])
        data["timings"] = {k: round(v, 2) for k, v in vars(self.timings).items()}
        data["masked"] = not unmask
        return data


def masked_card_fields(card: IdCard) -> dict[str, Any]:
    """Replacements that hide a card's personal fields where they need not be shown."""
    out: dict[str, Any] = {"name": mask_name(card.name), "id_number": mask_id(card.id_number)}
    if card.birth_date:
        out["birth_date"] = f"{card.birth_date.year:04d}-**-**"
    if card.address:
        out["address"] = card.address[:6] + "…"
    for key in ("english_name", "chinese_name"):
        value = getattr(card, key)
        if value:
            out[key] = mask_name(value)
    for key in ("permanent_residence_number", "travel_permit_number"):
        value = getattr(card, key)
        if value:
            out[key] = mask_id(value)
    return out


class SerialLine:
    """Blocking request/response over one serial port; used only from the reader's thread."""

    def __init__(self, port: str, baud: int, max_len: int = MAX_LEN) -> None:
        self.port = port
        self.baud = baud
        self.max_len = max_len
        self._serial: serial.Serial | None = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def open(self) -> None:
        try:
            self._serial = serial.Serial(self.port, self.baud, timeout=0.1, write_timeout=1.0,
                                         exclusive=True)
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            # termios.error: a port that vanished between open() and its configuration (a
            # pty whose other end closed, a USB reader pulled out at that moment)
            self._serial = None
            raise PortGoneError(f"cannot open serial port {self.port}: {_reason(exc)}") from None

    def close(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError, termios.error):
                self._serial.close()
            self._serial = None

    def transact(self, frame: bytes, timeout: float, name: str) -> Response:
        """Send one request frame and return the first complete reply, within ``timeout``."""
        port = self._serial
        if port is None:
            raise PortGoneError(f"serial port {self.port} is not open")
        deadline = time.monotonic() + timeout
        parser = FrameParser(self.max_len)
        try:
            port.reset_input_buffer()
            port.write(frame)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = parser.buffered
                    raise ReaderTimeout(
                        f"{name}: no complete reply within {timeout * 1000:.0f} ms"
                        + (f" ({got} bytes of a partial reply)" if got else " (no bytes)"))
                port.timeout = remaining
                chunk = port.read(parser.needed())
                if chunk:
                    parser.feed(chunk)
                    body = parser.pop()
                    if body is not None:
                        return Response.from_body(body)
        except (serial.SerialException, OSError, termios.error) as exc:
            self.close()
            raise PortGoneError(f"serial port {self.port} failed: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


_RETRYABLE_STATUS = {status.RECEIVED_CHECKSUM_ERROR, status.RECEIVED_LENGTH_ERROR}


class IdCardReader:
    """Async driver for one reader. Use ``async with IdCardReader(config) as reader``."""

    def __init__(self, config: ReaderConfig, photo_decoder: PhotoDecoder | None = None,
                 *, decoder_from_config: bool = True) -> None:
        if config.port is None:
            raise PortGoneError("no serial port configured for the ID card reader")
        self.config = config
        self.photo_decoder = photo_decoder
        if photo_decoder is None and decoder_from_config:
            self.photo_decoder = config.photo_decoder.build()
        self._line = SerialLine(config.port, config.baud)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="idcard-serial")
        self._lock = asyncio.Lock()

    @property
    def port(self) -> str:
        return self._line.port

    @property
    def baud(self) -> int:
        return self._line.baud

    @property
    def is_open(self) -> bool:
        return self._line.is_open

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        """Open the port (raises ``PortGoneError`` when it is absent)."""
        async with self._lock:
            if not self._line.is_open:
                await self._run(self._line.open)
                log.info("idcard.port_opened", port=self.port, baud=self.baud)

    async def close(self) -> None:
        async with self._lock:
            await self._run(self._line.close)

    async def aclose(self) -> None:
        """Close the port and stop the worker thread."""
        await self.close()
        self._executor.shutdown(wait=False)

    async def __aenter__(self) -> IdCardReader:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _timeout(self, command: Command) -> float:
        return float(getattr(self.config.timeouts, command.timeout))

    async def execute(self, command: Command, data: bytes = b"", *, para: int | None = None,
                      accept: frozenset[int] = frozenset()) -> Response:
        """Send a command, retrying transport faults; raise unless SW3 means success."""
        frame = command.request(data, para).encode()
        timeout = self._timeout(command)
        attempts = self.config.retries + 1
        async with self._lock:
            for attempt in range(1, attempts + 1):
                if not self._line.is_open:
                    await self._run(self._line.open)
                started = time.perf_counter()
                try:
                    reply: Response = await self._run(self._line.transact, frame, timeout,
                                                      command.name)
                except (ReaderTimeout, ChecksumError, FrameError) as exc:
                    log.warning("idcard.command_failed", command=command.name, attempt=attempt,
                                error=exc.__class__.__name__)
                    if attempt == attempts:
                        raise
                    continue
                ms = (time.perf_counter() - started) * 1000
                if reply.sw3 in _RETRYABLE_STATUS and attempt < attempts:
                    log.warning("idcard.reader_rejected_frame", command=command.name,
                                sw3=f"{reply.sw3:02X}", attempt=attempt)
                    continue
                log.debug("idcard.command", command=command.name, sw3=f"{reply.sw3:02X}",
                          bytes=len(reply.data), ms=round(ms, 2))
                if reply.sw3 in command.success or reply.sw3 in accept:
                    return reply
                raise status_error(reply.sw3, command.name)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the command table ------------------------------------------------------------------

    async def reset_sam(self) -> None:
        await self.execute(commands.RESET_SAM)

    async def sam_status(self) -> None:
        """Raises ``SamSelfTestError`` (SW3 0x60) when the SAM is unwell."""
        await self.execute(commands.SAM_STATUS)

    async def sam_id(self) -> SamId:
        return parse_sam_id((await self.execute(commands.READ_SAM_ID)).data)

    async def find_card(self) -> bytes:
        """The card's 4-byte IIN; raises ``NoCardError`` when no card is in the field."""
        return (await self.execute(commands.FIND_CARD)).data

    async def select_card(self) -> bytes:
        """The card's 8-byte serial."""
        return (await self.execute(commands.SELECT_CARD)).data

    async def read_base_info(self, *, fingerprint: bool = False) -> tuple[IdCard, bytes,
                                                                         bytes | None]:
        command = commands.READ_BASE_INFO_FINGERPRINT if fingerprint else commands.READ_BASE_INFO
        reply = await self.execute(command)
        info = parse_base_info(reply.data, with_fingerprint=fingerprint)
        return decode_text(info.text, today=date.today()), info.photo, info.fingerprint

    async def read_newest_address(self) -> str | None:
        """The newest added address, or None when the card has none (SW3 0x91)."""
        reply = await self.execute(commands.READ_NEWEST_ADDRESS,
                                   accept=frozenset({status.NO_CONTENT}))
        if reply.sw3 == status.NO_CONTENT:
            return None
        return parse_newest_address(reply.data)

    async def set_baud_rate(self, baud: int) -> None:
        """Switch the reader's line rate, then reopen the port at the new rate."""
        if baud not in commands.BAUD_CODES:
            raise ValueError(f"baud rate must be one of {sorted(commands.BAUD_CODES)}")
        await self.execute(commands.SET_BAUD_RATE, para=commands.BAUD_CODES[baud])
        async with self._lock:
            await self._run(self._line.close)
            self._line.baud = baud
            await self._run(self._line.open)
        log.info("idcard.baud_changed", baud=baud)

    async def set_max_rf_frame(self, size: int) -> None:
        if not 1 <= size <= 255:
            raise ValueError("max RF frame size must be 1..255 bytes")
        await self.execute(commands.SET_MAX_RF_FRAME, bytes([size]))

    # -- a whole read -----------------------------------------------------------------------

    async def read_card(self, *, fingerprint: bool = False, find: bool = True) -> CardRead:
        """Find, select and read the card on the reader; nothing partial on failure."""
        t0 = time.perf_counter()
        if find:
            await self.find_card()
        t1 = time.perf_counter()
        await self.select_card()
        t2 = time.perf_counter()
        card, wlt, fp_block = await self.read_base_info(fingerprint=fingerprint)
        t3 = time.perf_counter()
        decoded, reason = await self._decode_photo(wlt)
        timings = Timings((t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000,
                          (t3 - t0) * 1000)
        log.info("idcard.card_read", card_type=card.card_type.value,
                 id_number_valid=card.id_number_valid, warnings=len(card.warnings),
                 photo_decoded=decoded is not None, total_ms=round(timings.total_ms, 1))
        return CardRead(
            card=card, photo_wlt=wlt, photo=describe_photo(wlt, decoded, reason),
            decoded_photo=decoded,
            fingerprints=None if fp_block is None else parse_fingerprints(fp_block),
            fingerprint_block=fp_block, timings=timings,
        )

    async def _decode_photo(self, wlt: bytes) -> tuple[DecodedPhoto | None, str | None]:
        decoder = self.photo_decoder
        if decoder is None:
            if is_simulated_photo(wlt):
                return None, ("no photo decoder configured; this is the simulator's stand-in, "
                              "which idcard.photo_decoder.kind = 'simulated' decodes")
            return None, "no photo decoder configured (idcard.photo_decoder)"
        try:
            return await asyncio.to_thread(decoder.decode, wlt), None
        except PhotoDecodeError as exc:
            log.warning("idcard.photo_not_decoded", decoder=decoder.name, error=str(exc))
            return None, str(exc)


__all__ = ["CardRead", "IdCardReader", "ReaderConfig", "ReaderTimeouts", "StatusError",
           "Timings"]
