"""One material page from the camera: watch the preview, gate, auto-capture, then correct the
full-resolution still (refine the corners at full resolution, flatten, turn upright, render the
output mode). Everything here blocks: call it from a thread, never on an event loop."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from devices.camera import Camera, CameraConfig, CameraError, CameraGoneError
from devices.scanner.autocapture import AutoCapture, CaptureDecision, CaptureState
from devices.scanner.detect import Detection, PageDetector
from devices.scanner.enhance import OutputMode, render_mode, upright, warp
from devices.scanner.geometry import PageKind, classify
from devices.scanner.material import encode_jpeg
from devices.scanner.quality import QualityGates, QualityReport, QualityThresholds


class CaptureTimeout(CameraError):
    """No page could be captured in time (the last gate that failed is in the message)."""

    exit_code = 23
    kind = "capture_timeout"


class ScannerConfig(BaseModel):
    """``[scanner]`` in a kiosk's config file."""

    model_config = ConfigDict(extra="forbid")

    camera: CameraConfig = Field(default_factory=CameraConfig)
    reference: Path | None = Field(None, description="image of the empty mat, recorded with "
                                                     "`tongban devices scanner reference`")
    quality: QualityThresholds = Field(default_factory=QualityThresholds)
    stable_seconds: float = Field(1.0, ge=0, le=10)
    mode: OutputMode = OutputMode.DOCUMENT
    jpeg_quality: int = Field(88, ge=30, le=100)
    max_long_side: int = Field(3508, ge=500, le=10000,
                               description="output pixels on the long side (3508 = A4 at 300 dpi)")


@dataclass
class CapturedPage:
    """A finished page and how it was made."""

    image: np.ndarray
    kind: PageKind
    rotation: int
    corners: np.ndarray
    """Corners in the full-resolution still."""
    report: QualityReport
    mode: OutputMode
    timings_ms: dict[str, float] = field(default_factory=dict)

    def jpeg(self, quality: int = 88) -> bytes:
        return encode_jpeg(self.image, quality)


def finish_page(still: np.ndarray, preview_corners: np.ndarray,
                preview_shape: tuple[int, int], mode: OutputMode, *,
                max_long_side: int | None = 3508) -> tuple[np.ndarray, PageKind, int,
                                                           np.ndarray, dict[str, float]]:
    """From a full-resolution still and the quad found on the preview to the finished page."""
    t0 = time.perf_counter()
    sy = still.shape[0] / preview_shape[0]
    sx = still.shape[1] / preview_shape[1]
    corners = np.asarray(preview_corners, np.float64) * np.array([sx, sy])
    gray = cv2.cvtColor(still, cv2.COLOR_BGR2GRAY)
    scale = max(sx, sy)
    if scale > 1.01:
        corners = PageDetector.refine(gray, corners, radius=2 * scale + 2, samples=64)
        corners = PageDetector.refine(gray, corners, radius=3, samples=64)
    t1 = time.perf_counter()
    from devices.scanner.geometry import corrected_size

    w, h = corrected_size(corners)
    kind = classify(w, h, frame_long_side=max(still.shape[:2]))
    flat = warp(still, corners, kind, max_long_side)
    t2 = time.perf_counter()
    flat, rotation = upright(flat, kind)
    if kind in (PageKind.A4_PORTRAIT, PageKind.A4_LANDSCAPE):
        kind = PageKind.A4_PORTRAIT if flat.shape[0] > flat.shape[1] else PageKind.A4_LANDSCAPE
    t3 = time.perf_counter()
    if kind is PageKind.ID_CARD and mode is OutputMode.DOCUMENT:
        mode = OutputMode.COLOUR  # a card's photo and colours are evidence: never flatten them
    out = render_mode(flat, mode)
    t4 = time.perf_counter()
    timings = {"refine_ms": (t1 - t0) * 1000, "warp_ms": (t2 - t1) * 1000,
               "upright_ms": (t3 - t2) * 1000, "mode_ms": (t4 - t3) * 1000}
    return out, kind, rotation, corners, timings


class PageScanner:
    """Watches a camera until a page can be captured, then captures it."""

    def __init__(self, camera: Camera, config: ScannerConfig,
                 reference: np.ndarray | None = None) -> None:
        self.camera = camera
        self.config = config
        if reference is None and config.reference is not None:
            reference = cv2.imread(str(config.reference), cv2.IMREAD_COLOR)
            if reference is None:
                raise CameraGoneError(f"reference image {config.reference} is not readable")
        if reference is None and hasattr(camera.source, "reference"):
            reference = camera.source.reference()
        self.detector = PageDetector(reference)
        self.gates = QualityGates(config.quality)
        self.auto = AutoCapture(config.stable_seconds)
        self._previous: np.ndarray | None = None
        self._seq = 0

    def step(self) -> tuple[np.ndarray, Detection, CaptureDecision]:
        """Look at the next preview frame."""
        frame = self.camera.latest(self._seq)
        self._seq = frame.seq
        preview = self.camera.preview(frame)
        detection = self.detector.detect(preview)
        report = self.gates.assess(preview, detection, self._previous)
        self._previous = detection.corners if detection.found else None
        return preview, detection, self.auto.update(frame.t, detection, report)

    def capture(self, preview: np.ndarray, detection: Detection) -> CapturedPage:
        """Take the full-resolution still and finish the page found on ``preview``."""
        corners = detection.corners
        if corners is None:  # manual capture of the whole frame
            h, w = preview.shape[:2]
            corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float)
        still = self.camera.capture_still()
        report = self.gates.assess(preview, detection)
        image, kind, rotation, corners, timings = finish_page(
            still, corners, preview.shape[:2], self.config.mode,
            max_long_side=self.config.max_long_side)
        return CapturedPage(image, kind, rotation, corners, report, self.config.mode, timings)

    def wait_for_page(self, timeout: float, on_step: object = None) -> CapturedPage:
        """Step until auto-capture fires; ``CaptureTimeout`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last: CaptureDecision | None = None
        while time.monotonic() < deadline:
            preview, detection, last = self.step()
            if callable(on_step):
                on_step(detection, last)
            if last.state is CaptureState.CAPTURE:
                return self.capture(preview, detection)
        why = last.report.message("en") if last is not None else None
        raise CaptureTimeout(f"no page was captured within {timeout:.0f} s"
                             + (f" (last: {why})" if why else ""))
