"""What person-ID verification puts into the case: engine and model versions, threshold and
band, distances, decision, liveness steps with times and outcome, the best live still and the
card photo (as JPEG, never in logs or repr), and later the clerk's override."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from kiosk.identity.liveness import LivenessResult
from kiosk.identity.verify import Decision, VerificationResult


class LivenessStepRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    step: str
    started_at: float
    ended_at: float | None
    passed: bool
    peak: float


class LivenessRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    passed: bool
    steps: list[LivenessStepRecord]
    reasons: list[str]
    simulated: bool


class ClerkOverride(BaseModel):
    """A clerk's decision where the engine's was review (or was overruled)."""

    model_config = ConfigDict(frozen=True)

    clerk_id: str
    decision: Decision
    reason: str = Field(min_length=1, max_length=500)
    at: datetime


class VerificationRecord(BaseModel):
    """The verification as it travels with the case package."""

    model_config = ConfigDict(frozen=True)

    engine: dict[str, str]
    threshold: float
    review_band: tuple[float, float]
    distance: float | None
    frame_distances: list[float | None]
    decision: Decision
    reasons: list[str]
    liveness: LivenessRecord | None
    simulated: bool = False
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    clerk_override: ClerkOverride | None = None
    card_photo_jpeg: bytes = Field(b"", repr=False, exclude=True)
    best_live_still_jpeg: bytes = Field(b"", repr=False, exclude=True)

    def __repr__(self) -> str:
        return (f"VerificationRecord(decision={self.decision.value!r}, "
                f"distance={self.distance!r}, liveness="
                f"{None if self.liveness is None else self.liveness.passed!r})")

    __str__ = __repr__

    @property
    def final_decision(self) -> Decision:
        """The clerk's word where there is one, else the engine's."""
        return self.clerk_override.decision if self.clerk_override else self.decision

    def overridden(self, clerk_id: str, decision: Decision, reason: str) -> VerificationRecord:
        """A copy carrying the clerk's decision."""
        override = ClerkOverride(clerk_id=clerk_id, decision=decision, reason=reason,
                                 at=datetime.now(UTC))
        return self.model_copy(update={"clerk_override": override})

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _jpeg(image: np.ndarray | None, quality: int = 90) -> bytes:
    if image is None:
        return b""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return bytes(buf) if ok else b""


def build_record(result: VerificationResult, card_photo: np.ndarray,
                 engine_versions: dict[str, str], liveness: LivenessResult | None,
                 *, simulated: bool = False) -> VerificationRecord:
    """Assemble the record from a comparison and a liveness challenge."""
    live = None
    if liveness is not None:
        live = LivenessRecord(
            passed=liveness.passed, reasons=liveness.reasons, simulated=liveness.simulated,
            steps=[LivenessStepRecord(step=s.step.value, started_at=s.started_at,
                                      ended_at=s.ended_at, passed=s.passed, peak=s.peak)
                   for s in liveness.steps])
    return VerificationRecord(
        engine=engine_versions, threshold=result.threshold, review_band=result.band,
        distance=result.distance, frame_distances=[f.distance for f in result.frames],
        decision=result.decision, reasons=result.reasons, liveness=live,
        simulated=simulated or bool(live and live.simulated),
        card_photo_jpeg=_jpeg(card_photo), best_live_still_jpeg=_jpeg(result.best_still),
    )
