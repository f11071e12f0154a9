"""Gates on a live frame before it is compared, each with one short sentence for the citizen."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from devices.gates import GateVerdict
from kiosk.identity.engine import Box, Landmarks


class FaceGate(StrEnum):
    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    TOO_SMALL = "too_small"
    NOT_FRONTAL = "not_frontal"
    TOO_DARK = "too_dark"
    BACKLIT = "backlit"
    BLURRED = "blurred"


MESSAGES: dict[FaceGate, tuple[str, str]] = {
    FaceGate.NO_FACE: ("请正对屏幕上方的摄像头", "Look at the camera above the screen."),
    FaceGate.MULTIPLE_FACES: ("请只留一个人在镜头前", "Only one person in front of the camera."),
    FaceGate.TOO_SMALL: ("请再靠近一点", "Come a little closer."),
    FaceGate.NOT_FRONTAL: ("请正视摄像头", "Face the camera straight on."),
    FaceGate.TOO_DARK: ("光线太暗，请靠近屏幕", "Too dark: come closer to the screen."),
    FaceGate.BACKLIT: ("背后太亮，请换个方向站", "Too bright behind you: turn a little."),
    FaceGate.BLURRED: ("请保持不动", "Hold still."),
}


class FaceQualityConfig(BaseModel):
    """``[face.quality]``: where each live-frame gate trips."""

    model_config = ConfigDict(extra="forbid")

    min_face_px: int = Field(90, ge=40, description="face box width at full resolution")
    max_yaw: float = Field(0.25, gt=0, description="nose offset from the eyes' midpoint, in "
                                                   "eye distances")
    min_face_brightness: float = Field(60.0, ge=0, le=255)
    max_backlight_ratio: float = Field(1.8, gt=1, description="background over face brightness")
    min_sharpness: float = Field(25.0, ge=0, description="variance of the Laplacian, face "
                                                         "scaled to 160 px")


@dataclass
class FaceQuality(GateVerdict):
    """The gates' verdict on one frame."""

    MESSAGES = MESSAGES

    failed: list[FaceGate] = field(default_factory=list)
    faces: int = 0
    face_px: int = 0
    yaw: float | None = None
    brightness: float = 0.0
    sharpness: float = 0.0


def yaw_of(landmarks: Landmarks) -> float:
    """Head turn proxy from 5-point landmarks: the nose tip's horizontal offset from the eyes'
    midpoint, in inter-eye distances (0 frontal; positive = nose to the image's right)."""
    left, right = landmarks.centre("left_eye"), landmarks.centre("right_eye")
    nose = landmarks.centre("nose_tip")
    eye_distance = float(np.linalg.norm(left - right)) or 1.0
    return float((nose[0] - (left[0] + right[0]) / 2) / eye_distance)


def assess(bgr: np.ndarray, boxes: list[Box], landmarks: Landmarks | None,
           config: FaceQualityConfig) -> FaceQuality:
    """Apply every gate; boxes and landmarks are in ``bgr``'s full-resolution pixels."""
    report = FaceQuality(faces=len(boxes))
    if not boxes:
        report.failed.append(FaceGate.NO_FACE)
        return report
    if len(boxes) > 1:
        report.failed.append(FaceGate.MULTIPLE_FACES)
        return report
    box = boxes[0]
    report.face_px = box.width
    if box.width < config.min_face_px:
        report.failed.append(FaceGate.TOO_SMALL)
    if landmarks is not None:
        report.yaw = yaw_of(landmarks)
        if abs(report.yaw) > config.max_yaw:
            report.failed.append(FaceGate.NOT_FRONTAL)
    h, w = bgr.shape[:2]
    top, bottom = max(0, box.top), min(h, box.bottom)
    left, right = max(0, box.left), min(w, box.right)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    face = gray[top:bottom, left:right]
    if face.size == 0:
        report.failed.append(FaceGate.NO_FACE)
        return report
    report.brightness = float(face.mean())
    mask = np.ones_like(gray, bool)
    mask[top:bottom, left:right] = False
    background = float(gray[mask].mean()) if mask.any() else report.brightness
    if report.brightness < config.min_face_brightness:
        report.failed.append(FaceGate.TOO_DARK)
    elif background / max(report.brightness, 1.0) > config.max_backlight_ratio:
        report.failed.append(FaceGate.BACKLIT)
    scaled = cv2.resize(face, (160, 160), interpolation=cv2.INTER_AREA)
    report.sharpness = float(cv2.Laplacian(scaled, cv2.CV_64F).var())
    if report.sharpness < config.min_sharpness:
        report.failed.append(FaceGate.BLURRED)
    return report
