"""Signs that a live frame shows a screen or a print held up to the camera (a replay):
moiré (a screen's pixel grid beating with the camera's, a halftone print's dots: strong,
narrow peaks in the face's spectrum away from the centre) and a border (the straight edges
of a phone, a tablet or a sheet of paper framing the face).

These are flags for the clerk, never a decision: a sharp screen at a distance shows neither,
and a patterned scarf can look like moiré. Both the kiosk and the desk compute them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np

from kiosk.identity.engine import Box


class ReplaySign(StrEnum):
    MOIRE = "moire"
    BORDER = "border"


@dataclass
class ReplayReport:
    """What one frame shows; ``signs`` is empty for a frame without either sign."""

    signs: list[ReplaySign] = field(default_factory=list)
    moire: float = 0.0
    """Peak-to-background ratio of the strongest high-frequency peak in the face."""
    border: float = 0.0
    """Share of the face's surroundings framed by long straight edges (0-1)."""


MOIRE_LIMIT = 12.0
BORDER_LIMIT = 0.75


def moire_score(gray_face: np.ndarray) -> float:
    """How far the strongest narrow peak in the face's mid-to-high frequencies stands above
    that band's median (a natural face's spectrum falls off smoothly; a grid adds peaks)."""
    face = cv2.resize(gray_face, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32)
    face -= float(face.mean())
    window = np.outer(np.hanning(128), np.hanning(128)).astype(np.float32)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(face * window)))
    yy, xx = np.mgrid[-64:64, -64:64]
    radius = np.hypot(yy, xx).astype(int)
    # each frequency against the mean of its ring (a face's spectrum is smooth around a
    # ring); the axes carry the face's own straight edges and are left out
    ring_mean = np.bincount(radius.ravel(), spectrum.ravel()) / np.maximum(
        np.bincount(radius.ravel()), 1)
    band = (radius > 20) & (radius < 60) & (np.abs(xx) > 2) & (np.abs(yy) > 2)
    ratios = spectrum[band] / (ring_mean[radius[band]] + 1e-6)
    return float(ratios.max())


def border_score(gray: np.ndarray, box: Box) -> float:
    """Long straight edges on the sides around the face (a screen's or a sheet's frame): the
    share of the four sides, searched up to two and a half face sizes out, where a line at
    least as long as the face runs parallel to that side."""
    h, w = gray.shape[:2]
    edges = cv2.Canny(cv2.GaussianBlur(gray, (5, 5), 0), 50, 150)
    length = max(20, int(min(box.width, box.height) * 0.9))
    lines = cv2.HoughLinesP(edges, 1, np.pi / 180, threshold=length // 2,
                            minLineLength=length, maxLineGap=6)
    if lines is None:
        return 0.0
    cx, cy = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    reach_x, reach_y = box.width * 2.5, box.height * 2.5
    sides: set[str] = set()
    for x1, y1, x2, y2 in lines.reshape(-1, 4):
        dx, dy = x2 - x1, y2 - y1
        if abs(dy) <= 0.1 * abs(dx):  # horizontal
            y = (y1 + y2) / 2
            if min(x1, x2) < cx < max(x1, x2) and 0.5 * box.height < abs(y - cy) < reach_y \
                    and 2 < y < h - 3:
                sides.add("top" if y < cy else "bottom")
        elif abs(dx) <= 0.1 * abs(dy):  # vertical
            x = (x1 + x2) / 2
            if min(y1, y2) < cy < max(y1, y2) and 0.5 * box.width < abs(x - cx) < reach_x \
                    and 2 < x < w - 3:
                sides.add("left" if x < cx else "right")
    return len(sides) / 4


def assess_replay(bgr: np.ndarray, box: Box) -> ReplayReport:
    """Both signs on one frame, ``box`` the face in its pixels."""
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape[:2]
    face = gray[max(0, box.top):min(h, box.bottom), max(0, box.left):min(w, box.right)]
    report = ReplayReport()
    if face.size == 0:
        return report
    report.moire = moire_score(face)
    report.border = border_score(gray, box)
    if report.moire >= MOIRE_LIMIT:
        report.signs.append(ReplaySign.MOIRE)
    if report.border >= BORDER_LIMIT:
        report.signs.append(ReplaySign.BORDER)
    return report
