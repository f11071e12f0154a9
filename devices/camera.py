"""Cameras as frame sources: OpenCV capture (UVC index or device path, a video file or URL),
an image file or folder standing in for a camera, or a device's SIMULATED source.

A grabber thread keeps only the newest frame (buffer size 1 where the backend allows), so a
slow consumer never sees stale frames. For UVC the MJPG FOURCC is set before the size (the
Linux backend otherwise falls back to YUYV: about 1 fps at high resolution, or the high modes
hidden). Preview and capture resolutions are separate; ``modes()`` reports what was asked and
what the camera gave. An unplugged camera is reported and reopened every
``reconnect_interval`` seconds.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import structlog
from pydantic import BaseModel, ConfigDict, Field

log = structlog.get_logger("devices.camera")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class CameraError(Exception):
    """The camera cannot be opened or set up."""

    exit_code = 21
    kind = "camera_error"


class CameraGoneError(CameraError):
    """No frame within the timeout: unplugged, or the source ended."""

    exit_code = 22
    kind = "camera_gone"


class CameraConfig(BaseModel):
    """``[scanner]`` camera settings."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field("sim", description="index (0), device (/dev/video2), video file, URL, "
                                           "image file or folder, or sim[:SEED]")
    preview_size: tuple[int, int] = (960, 720)
    capture_size: tuple[int, int] = (4000, 3000)
    fourcc: str = Field("MJPG", min_length=4, max_length=4)
    fps: float = Field(15.0, gt=0, le=120)
    reconnect_interval: float = Field(1.0, gt=0, le=60)
    frame_timeout: float = Field(3.0, gt=0, le=60)


@dataclass(frozen=True)
class Frame:
    """One grabbed frame."""

    image: np.ndarray
    t: float
    """time.monotonic() when grabbed."""
    seq: int


@dataclass(frozen=True)
class ModesReport:
    """What the camera was asked for and what it gave."""

    source: str
    backend: str
    fourcc_asked: str
    fourcc_got: str
    preview_asked: tuple[int, int]
    preview_got: tuple[int, int]
    capture_asked: tuple[int, int]
    capture_got: tuple[int, int]
    fps_got: float
    simulated: bool

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class FrameSource(ABC):
    """Something that yields frames; blocking calls, used from the grabber thread."""

    simulated = False
    paced = False
    """True when read() blocks at the source's own rate (a real camera)."""

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """The next frame, or None when the source failed."""

    def set_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """Ask for a resolution; returns what the source gives."""
        return size

    def read_still(self, size: tuple[int, int]) -> np.ndarray | None:
        """A frame at ``size`` (sources that cannot switch return their native frame)."""
        return self.read()

    def close(self) -> None:
        return None

    backend = "none"
    fourcc = ""
    fps = 0.0


class SimulatedSource(FrameSource):
    """Base of a device's SIMULATED source: labelled, with a clock from ``open()``."""

    simulated = True
    backend = "simulated"
    fourcc = "SIM"

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self.fps = config.fps
        self._started = 0.0

    def open(self) -> None:
        self._started = time.monotonic()

    def now(self) -> float:
        """Seconds of simulated time since the source was opened."""
        return time.monotonic() - self._started


def _fourcc_text(value: float) -> str:
    code = int(value)
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00")


class OpenCVSource(FrameSource):
    """A UVC camera (index or /dev/videoN), a video file or a stream URL."""

    def __init__(self, target: int | str, config: CameraConfig) -> None:
        self.target = target
        self.config = config
        self.cap: cv2.VideoCapture | None = None
        self.is_device = isinstance(target, int) or str(target).startswith("/dev/video")
        self.is_file = not self.is_device and Path(str(target)).is_file()
        self.paced = not self.is_file  # a camera or stream blocks at its own rate; a file not

    def open(self) -> None:
        api = cv2.CAP_V4L2 if self.is_device else cv2.CAP_ANY
        cap = cv2.VideoCapture(self.target, api)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"cannot open camera {self.target}")
        if self.is_device:
            # FOURCC first: the V4L2 backend picks the pixel format when the size is set
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self.config.fourcc))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.preview_size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.preview_size[1])
            cap.set(cv2.CAP_PROP_FPS, self.config.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self.cap = cap
        self.backend = cap.getBackendName()
        self.fourcc = _fourcc_text(cap.get(cv2.CAP_PROP_FOURCC))
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)

    def read(self) -> np.ndarray | None:
        if self.cap is None:
            return None
        ok, image = self.cap.read()
        if not ok and self.is_file:  # a video file standing in for a camera loops
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self.cap.read()
        return image if ok else None

    def set_size(self, size: tuple[int, int]) -> tuple[int, int]:
        if self.cap is None or not self.is_device:
            return self._current_size(size)
        self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
        self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        return self._current_size(size)

    def _current_size(self, fallback: tuple[int, int]) -> tuple[int, int]:
        if self.cap is None:
            return fallback
        w = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return (w, h) if w and h else fallback

    def read_still(self, size: tuple[int, int]) -> np.ndarray | None:
        if not self.is_device:
            return self.read()
        preview = self.config.preview_size
        self.set_size(size)
        image = None
        for _ in range(3):  # the first frames after a mode switch are stale or partial
            image = self.read()
        self.set_size(preview)
        return image

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class ImageSource(FrameSource):
    """An image file, or a folder of images shown in turn, standing in for a camera."""

    def __init__(self, path: Path, interval: float = 2.0) -> None:
        self.path = path
        self.interval = interval
        self.backend = "images"
        self._images: list[Path] = []
        self._started = 0.0

    def open(self) -> None:
        if self.path.is_dir():
            self._images = sorted(p for p in self.path.iterdir()
                                  if p.suffix.lower() in IMAGE_SUFFIXES)
        elif self.path.is_file():
            self._images = [self.path]
        else:
            raise CameraError(f"no image file or folder at {self.path}")
        if not self._images:
            raise CameraError(f"no images in {self.path}")
        self._started = time.monotonic()

    def read(self) -> np.ndarray | None:
        if not self._images:
            return None
        index = int((time.monotonic() - self._started) / self.interval) % len(self._images)
        return cv2.imread(str(self._images[index]), cv2.IMREAD_COLOR)


SimulatedFactory = Callable[[int, "CameraConfig"], "FrameSource"]


def make_source(spec: str, config: CameraConfig,
                simulated: SimulatedFactory | None = None) -> FrameSource:
    """Parse a ``--source`` value; ``sim[:SEED]`` needs the device's simulated factory."""
    if spec == "sim" or spec.startswith("sim:"):
        if simulated is None:
            raise CameraError("this camera has no simulator")
        return simulated(int(spec.partition(":")[2] or 1), config)
    if spec.isdigit():
        return OpenCVSource(int(spec), config)
    path = Path(spec)
    if path.is_dir() or (path.suffix.lower() in IMAGE_SUFFIXES):
        return ImageSource(path)
    return OpenCVSource(spec, config)


class Camera:
    """A frame source behind a grabber thread that keeps the newest frame only."""

    simulated_factory: SimulatedFactory | None = None
    """What ``source = "sim"`` means for this kind of camera."""

    def __init__(self, config: CameraConfig, source: FrameSource | None = None) -> None:
        self.config = config
        self.source = source or make_source(config.source, config, self.simulated_factory)
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._new = threading.Condition(self._lock)
        self._latest: Frame | None = None
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False
        self.last_error: str | None = None
        self.preview_got: tuple[int, int] = config.preview_size

    @property
    def simulated(self) -> bool:
        return self.source.simulated

    def start(self, *, keep_trying: bool = False) -> Camera:
        """Open the source and start grabbing. If it cannot be opened this raises, unless
        ``keep_trying``: then the grabber keeps trying every ``reconnect_interval`` (a service
        that boots before its USB camera is there)."""
        try:
            self._open()
        except CameraError as exc:
            if not keep_trying:
                raise
            self.connected = False
            self.last_error = str(exc)
            log.warning("camera.absent_at_start", source=self.config.source)
        self._stop.clear()
        self._thread = threading.Thread(target=self._grab, name=f"camera-{self.config.source}",
                                        daemon=True)
        self._thread.start()
        return self

    def _open(self) -> None:
        self.source.open()
        self.preview_got = self.source.set_size(self.config.preview_size)
        self.connected = True
        self.last_error = None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._io_lock:
            self.source.close()

    def __enter__(self) -> Camera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _grab(self) -> None:
        period = 1.0 / self.config.fps
        while not self._stop.is_set():
            started = time.monotonic()
            if not self.connected:
                try:
                    with self._io_lock:
                        self._open()
                    log.info("camera.reconnected", source=self.config.source)
                except CameraError as exc:
                    self.last_error = str(exc)
                    self._stop.wait(self.config.reconnect_interval)
                    continue
            with self._io_lock:
                image = self.source.read()
            if image is None:
                self.connected = False
                self.last_error = "the camera stopped delivering frames (unplugged?)"
                log.warning("camera.lost", source=self.config.source)
                with self._io_lock:
                    self.source.close()
                self._stop.wait(self.config.reconnect_interval)
                continue
            with self._new:
                self._seq += 1
                self._latest = Frame(image, time.monotonic(), self._seq)
                self._new.notify_all()
            if not self.source.paced:
                self._stop.wait(max(0.0, period - (time.monotonic() - started)))

    def latest(self, after: int = 0, timeout: float | None = None) -> Frame:
        """The newest frame with a sequence number above ``after``; waits up to the timeout."""
        timeout = self.config.frame_timeout if timeout is None else timeout
        with self._new:
            ok = self._new.wait_for(lambda: self._latest is not None and self._latest.seq > after,
                                    timeout)
            if not ok or self._latest is None:
                raise CameraGoneError(f"no frame from camera {self.config.source} within "
                                      f"{timeout:.1f} s" + (f": {self.last_error}"
                                                            if self.last_error else ""))
            return self._latest

    def peek(self) -> Frame | None:
        """The newest frame without waiting (None before the first one)."""
        with self._lock:
            return self._latest

    def preview(self, frame: Frame) -> np.ndarray:
        """A frame at most the preview size (sources without modes are scaled down)."""
        h, w = frame.image.shape[:2]
        pw, ph = self.config.preview_size
        if w <= pw and h <= ph:
            return frame.image
        scale = min(pw / w, ph / h)
        return cv2.resize(frame.image, (int(w * scale), int(h * scale)),
                          interpolation=cv2.INTER_AREA)

    def capture_still(self) -> np.ndarray:
        """One frame at the capture resolution (the grabber pauses while the mode switches)."""
        with self._io_lock:
            image = self.source.read_still(self.config.capture_size)
        if image is None:
            raise CameraGoneError(f"camera {self.config.source} gave no full-resolution frame")
        return image

    def modes(self) -> ModesReport:
        """Ask for the capture size, read what came, and go back to preview."""
        still = self.capture_still()
        return ModesReport(
            source=self.config.source, backend=self.source.backend,
            fourcc_asked=self.config.fourcc, fourcc_got=self.source.fourcc,
            preview_asked=self.config.preview_size, preview_got=self.preview_got,
            capture_asked=self.config.capture_size,
            capture_got=(int(still.shape[1]), int(still.shape[0])),
            fps_got=self.source.fps, simulated=self.source.simulated)
