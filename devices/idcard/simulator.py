"""SIMULATED reader: a virtual GA 467 reader on a pty pair, byte-exact, with fault injection.

The host side opens ``path`` (the pty slave, or a stable symlink to it, like a udev link) with
the real driver. Replies are paced at the configured line rate (10 bits a byte), since a pty
has no baud rate of its own. Cards are inserted and removed on command; faults are injected for
a number of replies. ``unplug``/``replug`` close and recreate the pty, as a USB reader does.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

import structlog

from devices.idcard import commands, status
from devices.idcard.cards import SimulatedCard
from devices.idcard.errors import ChecksumError, FrameError, LengthError
from devices.idcard.frames import PREAMBLE, FrameParser, Request, Response
from devices.idcard.payloads import BaseInfo, SamId, encode_base_info

log = structlog.get_logger("devices.idcard.simulator")

DEFAULT_SAM_ID = SamId(5, 1, 20260101, 3200000001, 1234567)
RereadPolicy = Literal["must-leave", "stays"]


class Fault(StrEnum):
    """Faults the virtual reader can inject into its replies."""

    BAD_CHECKSUM = "bad-checksum"
    """The reply's checksum byte is wrong."""
    TRUNCATED = "truncated"
    """Only the first half of the reply is sent."""
    GARBAGE = "garbage"
    """Random bytes (with partial preambles) precede the reply."""
    SPLIT = "split"
    """The reply arrives in chunks of 1-7 bytes with pauses between them."""
    STALL = "stall"
    """No reply at all."""
    SAM_FAILURE = "sam-failure"
    """The SAM fails its self-test: every command answers SW3 0x60 (until cleared)."""
    NO_CARD = "no-card"
    """Find card answers SW3 0x80 although a card is present."""
    READ_FAILURE = "read-failure"
    """Read base info answers SW3 0x41."""


@dataclass
class _Pty:
    master: int
    slave: int
    slave_name: str


@dataclass
class SimulatorStats:
    """What the virtual reader has done (for tests and the technician)."""

    requests: int = 0
    replies: int = 0
    bad_requests: int = 0
    reads: int = 0
    commands: dict[str, int] = field(default_factory=dict)


class VirtualReader:
    """A SIMULATED ID card reader. ``start()`` returns the port path to hand to the driver."""

    def __init__(self, card: SimulatedCard | None = None, *, baud: int = 115200,
                 pace: bool = True, link: Path | None = None,
                 reread: RereadPolicy = "must-leave", sam_id: SamId = DEFAULT_SAM_ID,
                 processing_ms: float = 0.0, seed: int | None = None) -> None:
        self.baud = baud
        self.pace = pace
        self.link = link
        self.reread = reread
        self.sam_id = sam_id
        self.processing_ms = processing_ms
        self.max_rf_frame = 0x50
        self.stats = SimulatorStats()
        self._card = card
        self._card_blocks: tuple[bytes, bytes, bytes] | None = None
        self._read_since_insert = False
        self._faults: dict[Fault, int | None] = {}
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._pty: _Pty | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._actions: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]] = (
            queue.SimpleQueue())
        self.on_request: Callable[[str], None] | None = None
        if card is not None:
            self._prepare(card)

    # -- control ----------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """What the host opens: the link if one was asked for, else the pty slave."""
        if self.link is not None:
            return str(self.link)
        if self._pty is None:
            raise RuntimeError("the virtual reader is not started (or is unplugged)")
        return self._pty.slave_name

    @property
    def card_present(self) -> bool:
        return self._card is not None

    def start(self) -> str:
        """Create the pty pair and serve on a background thread; returns ``path``."""
        self._plug()
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="virtual-idcard", daemon=True)
        self._thread.start()
        log.info("simulator.started", path=self.path, baud=self.baud, simulated=True)
        return self.path

    def stop(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._unplug()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> VirtualReader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def insert(self, card: SimulatedCard) -> None:
        """Put a card on the reader."""
        blocks = self._blocks_of(card)
        with self._lock:
            self._card, self._card_blocks = card, blocks
            self._read_since_insert = False

    def remove(self) -> None:
        """Take the card off the reader."""
        with self._lock:
            self._card = None
            self._card_blocks = None
            self._read_since_insert = False

    def inject(self, fault: Fault | str, times: int | None = 1) -> None:
        """Apply a fault to the next ``times`` replies it concerns (None: until cleared)."""
        with self._lock:
            self._faults[Fault(fault)] = times

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def unplug(self) -> None:
        """Make the port disappear, as when a USB reader is pulled out."""
        self._on_server_thread(self._unplug)

    def replug(self) -> None:
        """Bring the port back (a new pty; the link, if any, points at it again)."""
        self._on_server_thread(self._plug)

    def _on_server_thread(self, action: Callable[[], None]) -> None:
        """Run a pty change where no select() is waiting on the fds it closes; wait for it."""
        if self._thread is None or not self._thread.is_alive():
            action()
            return
        done = threading.Event()
        self._actions.put((action, done))
        os.write(self._wake_w, b"x")
        if not done.wait(5):
            raise RuntimeError("the virtual reader's thread did not respond")

    # -- pty --------------------------------------------------------------------------------

    def _plug(self) -> None:
        if self._pty is not None:
            return
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._pty = _Pty(master, slave, os.ttyname(slave))
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self._pty.slave_name)
            tmp.replace(self.link)

    def _unplug(self) -> None:
        if self._pty is None:
            return
        if self.link is not None:
            self.link.unlink(missing_ok=True)
        for fd in (self._pty.master, self._pty.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._pty = None

    # -- serving ----------------------------------------------------------------------------

    def _serve(self) -> None:
        parser = FrameParser()
        current: _Pty | None = None
        while not self._stop.is_set():
            while not self._actions.empty():
                action, done = self._actions.get()
                with self._lock:
                    action()
                done.set()
            with self._lock:
                pty = self._pty
            if pty is not current:
                parser = FrameParser()
                current = pty
            fds = [self._wake_r] + ([pty.master] if pty else [])
            readable, _, _ = select.select(fds, [], [], 0.5)
            if self._wake_r in readable:
                os.read(self._wake_r, 64)
            if pty is None or pty.master not in readable:
                continue
            try:
                data = os.read(pty.master, 4096)
            except BlockingIOError:
                continue
            except OSError:
                time.sleep(0.01)  # the host closed its end; wait for the next open
                continue
            received_at = time.monotonic()
            parser.feed(data)
            while True:
                try:
                    body = parser.pop()
                except (ChecksumError, LengthError, FrameError) as exc:
                    self.stats.bad_requests += 1
                    code = (status.RECEIVED_CHECKSUM_ERROR if isinstance(exc, ChecksumError)
                            else status.RECEIVED_LENGTH_ERROR)
                    self._send(pty, Response(0, 0, code).encode(), received_at, 10)
                    continue
                if body is None:
                    break
                try:
                    request = Request.from_body(body)
                except FrameError:
                    self.stats.bad_requests += 1
                    self._send(pty, Response(0, 0, status.RECEIVED_LENGTH_ERROR).encode(),
                               received_at, len(body) + 8)
                    continue
                self._answer(pty, request, received_at, len(body) + 8)

    def _answer(self, pty: _Pty, request: Request, received_at: float, request_len: int) -> None:
        command = commands.identify(request)
        name = command.name if command else f"unknown_{request.cmd:02x}{request.para:02x}"
        self.stats.requests += 1
        self.stats.commands[name] = self.stats.commands.get(name, 0) + 1
        if self.on_request is not None:
            self.on_request(name)
        with self._lock:
            reply, new_baud = self._reply_to(command, request)
            if reply is None:  # stalled
                return
            frame, split = self._apply_wire_faults(reply.encode())
        self._send(pty, frame, received_at, request_len, split=split)
        if new_baud is not None:
            self.baud = new_baud

    def _take(self, fault: Fault) -> bool:
        if fault not in self._faults:
            return False
        left = self._faults[fault]
        if left is not None:
            if left <= 1:
                del self._faults[fault]
            else:
                self._faults[fault] = left - 1
        return True

    def _reply_to(self, command: commands.Command | None,
                  request: Request) -> tuple[Response | None, int | None]:
        ok = status.SUCCESS
        if self._take(Fault.STALL):
            return None, None
        if Fault.SAM_FAILURE in self._faults:
            return Response(0, 0, status.SAM_SELF_TEST_FAILED), None
        if command is None:
            return Response(0, 0, status.COMMAND_ERROR), None
        if command is commands.RESET_SAM or command is commands.SAM_STATUS:
            return Response(0, 0, ok), None
        if command is commands.READ_SAM_ID:
            return Response(0, 0, ok, self.sam_id.encode()), None
        if command is commands.SET_BAUD_RATE:
            baud = commands.BAUD_BY_CODE.get(request.para)
            if baud is None:
                return Response(0, 0, status.COMMAND_ERROR), None
            return Response(0, 0, ok), baud
        if command is commands.SET_MAX_RF_FRAME:
            if len(request.data) != 1 or request.data[0] == 0:
                return Response(0, 0, status.COMMAND_ERROR), None
            self.max_rf_frame = request.data[0]
            return Response(0, 0, ok), None
        if command is commands.FIND_CARD:
            absent = (self._card is None or self._take(Fault.NO_CARD)
                      or (self.reread == "must-leave" and self._read_since_insert))
            if absent:
                return Response(0, 0, status.NO_CARD), None
            return Response(0, 0, status.FIND_OK, b"\x00\x00\x00\x00"), None
        if command is commands.SELECT_CARD:
            if self._card is None:
                return Response(0, 0, status.SELECT_FAILED), None
            return Response(0, 0, ok, bytes(range(0x11, 0x19))), None
        if self._card is None or self._card_blocks is None:
            return Response(0, 0, status.READ_FAILED), None
        text, photo, fingerprint = self._card_blocks
        if command in (commands.READ_BASE_INFO, commands.READ_BASE_INFO_FINGERPRINT):
            if self._take(Fault.READ_FAILURE):
                return Response(0, 0, status.READ_FAILED), None
            with_fp = command is commands.READ_BASE_INFO_FINGERPRINT
            data = encode_base_info(BaseInfo(text, photo, fingerprint if with_fp else None))
            self._read_since_insert = True
            self.stats.reads += 1
            return Response(0, 0, ok, data), None
        if command is commands.READ_NEWEST_ADDRESS:
            address = self._card.newest_address
            if not address:
                return Response(0, 0, status.NO_CONTENT), None
            from devices.idcard.cardtext import encode_ucs2
            return Response(0, 0, ok, encode_ucs2(address, 70)), None
        return Response(0, 0, status.COMMAND_ERROR), None

    def _apply_wire_faults(self, frame: bytes) -> tuple[bytes, bool]:
        if self._take(Fault.BAD_CHECKSUM):
            frame = frame[:-1] + bytes([frame[-1] ^ 0x5A])
        if self._take(Fault.TRUNCATED):
            frame = frame[: max(len(PREAMBLE) + 2, len(frame) // 2)]
        if self._take(Fault.GARBAGE):
            junk = bytes(self._rng.randrange(256) for _ in range(self._rng.randint(3, 40)))
            frame = junk + PREAMBLE[:3] + junk[:5] + PREAMBLE[:4] + frame
        return frame, self._take(Fault.SPLIT)

    def _send(self, pty: _Pty, frame: bytes, received_at: float, request_len: int, *,
              split: bool = False) -> None:
        """Write a reply, paced at the line rate (the request's own wire time first)."""
        bytes_per_s = self.baud / 10
        start = received_at
        if self.pace:
            start += request_len / bytes_per_s
        start += self.processing_ms / 1000
        pos = 0
        while pos < len(frame):
            size = self._rng.randint(1, 7) if split else 64
            chunk = frame[pos:pos + size]
            pos += len(chunk)
            due = start + (pos / bytes_per_s if self.pace else 0)
            if split:
                due = max(due, time.monotonic() + 0.002)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if not self._actions.empty():
                return  # unplugged mid-reply: the rest of the reply never arrives
            if not self._write_all(pty, chunk):
                return
        self.stats.replies += 1

    def _write_all(self, pty: _Pty, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                n = os.write(pty.master, view)
            except BlockingIOError:
                select.select([], [pty.master], [], 0.05)
                continue
            except OSError:
                return False  # unplugged while sending
            view = view[n:]
        return True

    @staticmethod
    def _blocks_of(card: SimulatedCard) -> tuple[bytes, bytes, bytes]:
        return card.text_block(), card.photo_block(), card.fingerprint_block()

    def _prepare(self, card: SimulatedCard) -> None:
        self._card_blocks = self._blocks_of(card)
