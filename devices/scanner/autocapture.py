"""Auto-capture: when the page has stayed put for ``stable_seconds`` and every gate passes,
capture once; capture again only after the page is taken away or replaced."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from devices.scanner.detect import Detection
from devices.scanner.quality import Gate, QualityReport


class CaptureState(StrEnum):
    WAITING = "waiting"
    """No page on the mat."""
    ADJUST = "adjust"
    """A page, but a gate fails (the report says which)."""
    STEADY = "steady"
    """Page still and good: counting down."""
    CAPTURE = "capture"
    """Capture now (reported once per placement)."""
    CAPTURED = "captured"
    """Already captured; waiting for the page to be taken away or replaced."""


@dataclass
class CaptureDecision:
    state: CaptureState
    progress: float
    """0..1 of the steady time reached (for a progress ring on the touch screen)."""
    report: QualityReport

    @property
    def capture(self) -> bool:
        return self.state is CaptureState.CAPTURE


class AutoCapture:
    """Feed it each frame's detection and gate report with the frame's time."""

    def __init__(self, stable_seconds: float = 1.0, *, move_tolerance_px: float = 4.0,
                 replaced_tolerance_px: float = 20.0, gone_seconds: float = 0.5) -> None:
        self.stable_seconds = stable_seconds
        self.move_tolerance_px = move_tolerance_px
        self.replaced_tolerance_px = replaced_tolerance_px
        self.gone_seconds = gone_seconds
        self._anchor: np.ndarray | None = None
        self._since: float | None = None
        self._captured_at: np.ndarray | None = None
        self._missing_since: float | None = None
        self._manual = False

    def request_manual(self) -> None:
        """Capture at the next frame with a page, whatever the gates say."""
        self._manual = True

    def update(self, t: float, detection: Detection, report: QualityReport) -> CaptureDecision:
        if not detection.found or detection.corners is None:
            if self._manual:  # a manual capture with no page found takes the whole frame
                self._manual = False
                return CaptureDecision(CaptureState.CAPTURE, 1.0, report)
            if self._missing_since is None:
                self._missing_since = t
            if t - self._missing_since >= self.gone_seconds:
                self._captured_at = None  # the page left: re-arm
            self._anchor = self._since = None
            return CaptureDecision(CaptureState.WAITING, 0.0, report)
        self._missing_since = None
        corners = detection.corners
        if self._manual:
            self._manual = False
            self._captured_at = corners
            return CaptureDecision(CaptureState.CAPTURE, 1.0, report)
        if self._captured_at is not None:
            moved = float(np.linalg.norm(corners - self._captured_at, axis=1).max())
            if moved <= self.replaced_tolerance_px:
                return CaptureDecision(CaptureState.CAPTURED, 1.0, report)
            self._captured_at = None  # a different page, or this one moved: re-arm
        moved = self._anchor is not None and float(
            np.linalg.norm(corners - self._anchor, axis=1).max()) > self.move_tolerance_px
        if self._anchor is None or moved:
            self._anchor, self._since = corners, t
            if moved and Gate.MOVING not in report.failed:
                report.failed.insert(0, Gate.MOVING)
            state = CaptureState.STEADY if report.ok else CaptureState.ADJUST
            return CaptureDecision(state, 0.0, report)
        failing = [g for g in report.failed if g is not Gate.MOVING]
        if failing:
            self._since = t
            return CaptureDecision(CaptureState.ADJUST, 0.0, report)
        since = self._since if self._since is not None else t
        progress = min(1.0, (t - since) / self.stable_seconds) if self.stable_seconds else 1.0
        if progress >= 1.0:
            self._captured_at = corners
            return CaptureDecision(CaptureState.CAPTURE, 1.0, report)
        return CaptureDecision(CaptureState.STEADY, progress, report)
