"""Quality gates on a detected page, each with one short sentence for the citizen.

Sharpness is the variance of the Laplacian on the page warped to a fixed size (so that it does
not depend on the camera's resolution or the page's size in the frame); glare is the fraction
of the page covered by clipped bright blobs; darkness is the page's mean brightness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from devices.gates import GateVerdict
from devices.scanner.detect import Detection
from devices.scanner.geometry import touches_border

SHARPNESS_SIZE = 640
"""Long side of the page image on which sharpness, glare and brightness are measured."""


class Gate(StrEnum):
    """Why a page cannot be captured yet."""

    NO_PAGE = "no_page"
    NOT_INSIDE = "not_inside"
    MOVING = "moving"
    BLURRED = "blurred"
    GLARE = "glare"
    TOO_DARK = "too_dark"


MESSAGES: dict[Gate, tuple[str, str]] = {
    Gate.NO_PAGE: ("请把材料平放在台面中央", "Lay the paper flat in the middle of the mat."),
    Gate.NOT_INSIDE: ("材料没有完全放进拍摄范围，请往中间移一移",
                      "The page is not fully inside: move it towards the middle."),
    Gate.MOVING: ("请把手拿开，保持材料不动", "Take your hand away and hold still."),
    Gate.BLURRED: ("图像模糊，请把材料放平", "Too blurred: lay the page flat."),
    Gate.GLARE: ("有反光，请把材料倾斜一点或移开台灯", "Glare: tilt the page or move the lamp."),
    Gate.TOO_DARK: ("光线太暗，请打开台灯", "Too dark: turn on the lamp."),
}


class QualityThresholds(BaseModel):
    """``[scanner.quality]``: where each gate trips."""

    model_config = ConfigDict(extra="forbid")

    min_sharpness: float = Field(40.0, ge=0, description="variance of the Laplacian")
    max_glare: float = Field(0.004, ge=0, le=1, description="fraction of the page clipped")
    min_brightness: float = Field(70.0, ge=0, le=255, description="mean grey level of the page")
    border_margin: float = Field(3.0, ge=0, description="pixels a corner must keep from the edge")
    move_tolerance: float = Field(0.004, gt=0, description="corner travel between frames, as a "
                                                           "fraction of the frame diagonal")


@dataclass
class QualityReport(GateVerdict):
    """The gates' verdict on one frame."""

    MESSAGES = MESSAGES

    failed: list[Gate] = field(default_factory=list)
    sharpness: float = 0.0
    glare: float = 0.0
    brightness: float = 0.0


def page_thumbnail(frame: np.ndarray, corners: np.ndarray,
                   size: int = SHARPNESS_SIZE) -> np.ndarray:
    """The page warped flat to ``size`` pixels on its long side (for measuring, not output)."""
    from devices.scanner.geometry import corrected_size

    w, h = corrected_size(corners)
    scale = min(1.0, size / max(w, h, 1))  # never upsample: that would fake blur
    dw, dh = max(8, int(w * scale)), max(8, int(h * scale))
    dst = np.array([[0, 0], [dw - 1, 0], [dw - 1, dh - 1], [0, dh - 1]], np.float32)
    m = cv2.getPerspectiveTransform(np.asarray(corners, np.float32), dst)
    return cv2.warpPerspective(frame, m, (dw, dh), flags=cv2.INTER_AREA)


def measure(page: np.ndarray) -> tuple[float, float, float]:
    """Sharpness, glare fraction and mean brightness of a flat page image."""
    gray = cv2.cvtColor(page, cv2.COLOR_BGR2GRAY) if page.ndim == 3 else page
    inner = gray[gray.shape[0] // 40: -max(1, gray.shape[0] // 40),
                 gray.shape[1] // 40: -max(1, gray.shape[1] // 40)]
    sharpness = float(cv2.Laplacian(inner, cv2.CV_64F).var())
    clipped = cv2.morphologyEx((inner >= 250).astype(np.uint8), cv2.MORPH_OPEN,
                               np.ones((5, 5), np.uint8))
    glare = float(clipped.mean())
    return sharpness, glare, float(inner.mean())


class QualityGates:
    """Applies the thresholds to a frame and its detection."""

    def __init__(self, thresholds: QualityThresholds | None = None) -> None:
        self.t = thresholds or QualityThresholds()

    def assess(self, frame: np.ndarray, detection: Detection,
               previous: np.ndarray | None = None) -> QualityReport:
        if not detection.found or detection.corners is None:
            return QualityReport([Gate.NO_PAGE])
        h, w = frame.shape[:2]
        report = QualityReport()
        if touches_border(detection.corners, w, h, self.t.border_margin):
            report.failed.append(Gate.NOT_INSIDE)
        if previous is not None:
            travel = float(np.linalg.norm(detection.corners - previous, axis=1).max())
            if travel > self.t.move_tolerance * float(np.hypot(w, h)):
                report.failed.append(Gate.MOVING)
        page = page_thumbnail(frame, detection.corners)
        report.sharpness, report.glare, report.brightness = measure(page)
        if report.brightness < self.t.min_brightness:
            report.failed.append(Gate.TOO_DARK)
        elif report.glare > self.t.max_glare:
            report.failed.append(Gate.GLARE)
        if report.sharpness < self.t.min_sharpness and Gate.TOO_DARK not in report.failed:
            report.failed.append(Gate.BLURRED)
        return report
