"""The 1024-byte WLT photo block and the plug-ins that decode it to a 102 x 126 bitmap.

WLT is proprietary and has no open decoder: in production the decoder is the reader vendor's
shared library, loaded by path from configuration (``VendorLibraryDecoder``). The simulator
writes a labelled stand-in container instead of real WLT, which only ``SimulatedPhotoDecoder``
reads; everything it decodes is marked ``simulated``.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict

from devices.idcard.errors import PhotoDecodeError

WLT_LEN = 1024
WIDTH, HEIGHT = 102, 126
RAW_LEN = WIDTH * HEIGHT * 3
"""38,556 bytes of 24-bit BGR."""
BMP_LEN = 54 + 308 * HEIGHT
"""38,862 bytes: a BMP header and rows padded from 306 to 308 bytes."""

SIMULATED_MAGIC = b"TONGBAN-SIMULATED-WLT\x00"


@dataclass(frozen=True)
class DecodedPhoto:
    """A decoded card photo."""

    bgr: np.ndarray
    """126 rows x 102 columns x 3, uint8, BGR."""
    decoder: str
    """Which plug-in decoded it."""
    simulated: bool
    """True when this did not come from a real card through a vendor decoder."""

    def to_bmp(self) -> bytes:
        """The photo as a BMP file."""
        ok, buf = cv2.imencode(".bmp", self.bgr)
        if not ok:
            raise PhotoDecodeError("could not encode the photo as BMP")
        return bytes(buf)


class PhotoInfo(BaseModel):
    """What a read says about the photo, never its pixels."""

    model_config = ConfigDict(frozen=True)

    format: Literal["wlt", "simulated-wlt"]
    bytes: int
    sha256: str
    decoded: bool
    decoder: str | None = None
    simulated: bool = False
    reason: str | None = None


class PhotoDecoder(ABC):
    """A plug-in that turns a WLT block into a bitmap. Blocking: call it from a thread."""

    name: str = "abstract"
    simulated: bool = False

    @abstractmethod
    def decode(self, wlt: bytes) -> DecodedPhoto:
        """Decode one 1024-byte block, or raise ``PhotoDecodeError``."""


class VendorLibraryDecoder(PhotoDecoder):
    """The reader vendor's shared library, called through ctypes.

    Expected C signature (the common ``unpack`` convention, cdecl):
    ``int unpack(const unsigned char *wlt, unsigned char *out, int flag)``, returning
    ``success`` on success and writing a BMP file (``output = "bmp"``, 38,862 bytes) or raw
    top-down BGR (``output = "bgr"``, 38,556 bytes) into ``out``. Vendor libraries are rarely
    thread-safe, so calls are serialised.
    """

    name = "vendor"

    def __init__(self, library: Path, symbol: str = "unpack", *,
                 output: Literal["bmp", "bgr"] = "bmp", flag: int = 1, success: int = 1) -> None:
        self.library = Path(library)
        self.symbol = symbol
        self.output = output
        self.flag = flag
        self.success = success
        self._fn: Callable[[bytes, Any, int], int] | None = None
        self._lock = threading.Lock()

    def _load(self) -> Callable[[bytes, Any, int], int]:
        if self._fn is None:
            if not self.library.is_file():
                raise PhotoDecodeError(f"vendor photo library not found: {self.library}")
            try:
                lib = ctypes.CDLL(str(self.library))
            except OSError as exc:
                raise PhotoDecodeError(
                    f"cannot load vendor photo library {self.library}: {exc}") from None
            try:
                fn = getattr(lib, self.symbol)
            except AttributeError:
                raise PhotoDecodeError(
                    f"vendor photo library {self.library} has no function {self.symbol!r}"
                ) from None
            fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
            fn.restype = ctypes.c_int
            self._fn = cast(Callable[[bytes, Any, int], int], fn)
        return self._fn

    def decode(self, wlt: bytes) -> DecodedPhoto:
        if len(wlt) != WLT_LEN:
            raise PhotoDecodeError(f"photo block has {len(wlt)} bytes, expected {WLT_LEN}")
        size = BMP_LEN if self.output == "bmp" else RAW_LEN
        out = ctypes.create_string_buffer(size + 1024)  # slack: some libraries write past
        with self._lock:
            fn = self._load()
            rc = fn(wlt, out, self.flag)
        if rc != self.success:
            raise PhotoDecodeError(f"vendor photo library returned {rc}, expected {self.success}")
        data = out.raw[:size]
        if self.output == "bmp":
            if data[:2] != b"BM":
                raise PhotoDecodeError("vendor photo library did not write a BMP")
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if image is None or image.shape[:2] != (HEIGHT, WIDTH):
                raise PhotoDecodeError("vendor photo library wrote a BMP that is not 102 x 126")
        else:
            image = np.frombuffer(data, np.uint8).reshape(HEIGHT, WIDTH, 3).copy()
        return DecodedPhoto(image, self.name, simulated=False)


class SimulatedPhotoDecoder(PhotoDecoder):
    """Reads the simulator's stand-in container (never real WLT): output is labelled simulated."""

    name = "simulated"
    simulated = True

    def decode(self, wlt: bytes) -> DecodedPhoto:
        if not is_simulated(wlt):
            raise PhotoDecodeError("not a simulated photo: real WLT needs the vendor decoder")
        n = int.from_bytes(wlt[len(SIMULATED_MAGIC):len(SIMULATED_MAGIC) + 2], "big")
        start = len(SIMULATED_MAGIC) + 2
        payload = wlt[start:start + n]
        image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise PhotoDecodeError("simulated photo container holds no image")
        if image.shape[:2] != (HEIGHT, WIDTH):
            image = cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        return DecodedPhoto(image, self.name, simulated=True)


def is_simulated(wlt: bytes) -> bool:
    """Whether a photo block is the simulator's stand-in container."""
    return wlt.startswith(SIMULATED_MAGIC)


def encode_simulated(bgr: np.ndarray) -> bytes:
    """Pack an image into a 1024-byte simulated container, degrading it like a chip photo."""
    small = cv2.resize(bgr, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    room = WLT_LEN - len(SIMULATED_MAGIC) - 2
    for quality in range(40, 4, -5):
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and len(buf) <= room:
            payload = bytes(buf)
            break
    else:
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        ok, buf = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, 10])
        if not ok or len(buf) > room:
            raise ValueError("image does not fit a 1024-byte simulated photo block")
        payload = bytes(buf)
    block = SIMULATED_MAGIC + len(payload).to_bytes(2, "big") + payload
    return block + b"\x00" * (WLT_LEN - len(block))


def placeholder_portrait(seed: str) -> np.ndarray:
    """A drawn head-and-shoulders figure (not a real face) for sample cards."""
    rng = np.random.default_rng(zlib.crc32(seed.encode()))
    img = np.full((HEIGHT * 4, WIDTH * 4, 3), (250, 250, 250), np.uint8)
    skin = tuple(int(v) for v in rng.integers([150, 170, 200], [190, 205, 235]))
    hair = tuple(int(v) for v in rng.integers(10, 60, size=3))
    coat = tuple(int(v) for v in rng.integers(30, 140, size=3))
    cx = WIDTH * 2
    cv2.ellipse(img, (cx, 470), (170, 110), 0, 180, 360, coat, -1)
    cv2.rectangle(img, (cx - 30, 300), (cx + 30, 380), skin, -1)
    cv2.ellipse(img, (cx, 210), (95, 125), 0, 0, 360, skin, -1)
    cv2.ellipse(img, (cx, 150), (100, 75), 0, 180, 360, hair, -1)
    for dx in (-38, 38):
        cv2.ellipse(img, (cx + dx, 205), (16, 8), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(img, (cx + dx, 205), 6, (40, 30, 20), -1)
    cv2.line(img, (cx, 215), (cx - 8, 260), (120, 120, 150), 3)
    cv2.ellipse(img, (cx, 290), (30, 10), 0, 0, 180, (80, 80, 160), 4)
    return cv2.resize(img, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


def describe(wlt: bytes, decoded: DecodedPhoto | None, reason: str | None) -> PhotoInfo:
    """The JSON-safe description of a photo block and its decoding."""
    return PhotoInfo(
        format="simulated-wlt" if is_simulated(wlt) else "wlt",
        bytes=len(wlt),
        sha256=hashlib.sha256(wlt).hexdigest(),
        decoded=decoded is not None,
        decoder=decoded.decoder if decoded else None,
        simulated=decoded.simulated if decoded else is_simulated(wlt),
        reason=reason,
    )


class PhotoDecoderConfig(BaseModel):
    """Which decoder plug-in to use (``[idcard.photo_decoder]`` in the config file)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["none", "vendor", "simulated"] = "none"
    library: Path | None = None
    symbol: str = "unpack"
    output: Literal["bmp", "bgr"] = "bmp"
    flag: int = 1
    success: int = 1

    def build(self) -> PhotoDecoder | None:
        """The configured decoder, or None."""
        if self.kind == "none":
            return None
        if self.kind == "simulated":
            return SimulatedPhotoDecoder()
        if self.library is None:
            raise PhotoDecodeError("photo_decoder.kind = 'vendor' needs photo_decoder.library")
        return VendorLibraryDecoder(self.library, self.symbol, output=self.output,
                                    flag=self.flag, success=self.success)
