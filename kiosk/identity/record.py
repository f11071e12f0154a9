"""What person-ID verification puts into the case: engine and model versions, threshold and
band, distances, decision, liveness steps with times and outcome, the best live still and the
card photo (as JPEG, never in logs or repr), and later the clerk's override."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

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
    challenge_id: str = ""
    sequence: list[str] = Field(default_factory=list)
    """The steps the challenge asked for, in order (the desk checks the evidence against it)."""
    mirrored: bool = False
    step_timeout: float | None = None


EvidenceKind = Literal["live", "start", "step", "attempt"]


class EvidenceFrame(BaseModel):
    """A still that travels in the package, and what it shows."""

    model_config = ConfigDict(frozen=True)

    file: str
    kind: EvidenceKind
    """live: a frame fused into the comparison (the first is the best); start: the liveness
    challenge's first frame; step: the frame a step was judged done in; attempt: the best
    still of an earlier failed attempt."""
    t: float | None = None
    step: str | None = None


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
    fused_frames: int = 0
    evidence: list[EvidenceFrame] = Field(default_factory=list)
    replay_signs: list[str] = Field(default_factory=list)
    """Signs of a screen or print replay in the live stills (flags for the clerk)."""
    attempt: int = 1
    failed_attempts: int = 0
    """Earlier attempts of this session that did not pass."""
    to_clerk: bool = False
    """The attempts ran out: the clerk verifies the citizen in the call."""
    simulated: bool = False
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    clerk_override: ClerkOverride | None = None
    card_photo_jpeg: bytes = Field(b"", repr=False, exclude=True)
    best_live_still_jpeg: bytes = Field(b"", repr=False, exclude=True)
    evidence_jpegs: dict[str, bytes] = Field(default_factory=dict, repr=False, exclude=True)
    """Every evidence still by file name (``best_live_still_jpeg`` is ``live_still.jpg``)."""

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
                 *, simulated: bool = False, step_timeout: float | None = None,
                 replay_signs: list[str] | None = None, attempt: int = 1,
                 earlier: list[bytes] | None = None) -> VerificationRecord:
    """Assemble the record from a comparison and a liveness challenge: the fused live
    stills, the challenge's start frame and each step's frame (with their times), and the
    best stills of ``earlier`` failed attempts, as JPEG evidence files."""
    jpegs: dict[str, bytes] = {}
    evidence: list[EvidenceFrame] = []

    def add(name: str, image: np.ndarray | None, kind: EvidenceKind, t: float | None = None,
            step: str | None = None) -> None:
        data = _jpeg(image)
        if data:
            jpegs[name] = data
            evidence.append(EvidenceFrame(file=name, kind=kind, t=t, step=step))

    for n, still in enumerate(result.stills):
        index = result.fused[n]
        add("live_still.jpg" if n == 0 else f"live_{n + 1}.jpg", still, "live",
            result.frames[index].t)
    live = None
    if liveness is not None:
        live = LivenessRecord(
            passed=liveness.passed, reasons=liveness.reasons, simulated=liveness.simulated,
            challenge_id=liveness.challenge_id, sequence=[s.value for s in liveness.sequence],
            mirrored=liveness.mirrored, step_timeout=step_timeout,
            steps=[LivenessStepRecord(step=s.step.value, started_at=s.started_at,
                                      ended_at=s.ended_at, passed=s.passed, peak=s.peak)
                   for s in liveness.steps])
        if liveness.start_frame is not None:
            add("liveness_start.jpg", liveness.start_frame[0], "start", liveness.start_frame[1])
        for n, outcome in enumerate(liveness.steps, 1):
            if outcome.evidence is not None:
                add(f"liveness_{n}_{outcome.step.value}.jpg", outcome.evidence, "step",
                    outcome.evidence_t, outcome.step.value)
    for n, data in enumerate(earlier or [], 1):
        if data:
            jpegs[f"face_attempt_{n}.jpg"] = data
            evidence.append(EvidenceFrame(file=f"face_attempt_{n}.jpg", kind="attempt"))
    return VerificationRecord(
        engine=engine_versions, threshold=result.threshold, review_band=result.band,
        distance=result.distance, frame_distances=[f.distance for f in result.frames],
        decision=result.decision, reasons=result.reasons, liveness=live,
        fused_frames=len(result.fused), evidence=evidence,
        replay_signs=sorted(set(replay_signs or [])), attempt=attempt,
        failed_attempts=len(earlier or []),
        simulated=simulated or bool(live and live.simulated),
        card_photo_jpeg=_jpeg(card_photo), best_live_still_jpeg=_jpeg(result.best_still),
        evidence_jpegs=jpegs,
    )
