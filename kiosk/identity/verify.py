"""The comparison: card photo prepared once, live frames gated, best of several frames, and a
decision from the distance with a review band where the clerk decides.

face_recognition over-accepts among East Asian faces (its issues #612, #431; dlib #480:
different Chinese people well under its usual 0.6), so the default threshold is strict (0.47)
and distances within 0.05 of it go to the clerk, who always sees the card photo and the best
live still side by side.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from kiosk.identity.engine import Box, FaceEngine, Landmarks
from kiosk.identity.quality import FaceGate, FaceQuality, FaceQualityConfig, assess


class CardPhotoError(Exception):
    """The card photo has no usable face."""

    exit_code = 31
    kind = "card_photo_error"


class VerifyConfig(BaseModel):
    """``[face]``: the comparison's settings."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.47, gt=0, lt=1.5, description="decision distance (strict; "
                                                             "face_recognition's default is 0.6)")
    review_band: float = Field(0.05, ge=0, lt=0.5, description="+/- this around the threshold: "
                                                               "the clerk decides")
    detect_width: int = Field(320, ge=160, le=1920, description="live frames are searched for "
                                                                "faces at this width")
    card_min_width: int = Field(400, ge=102, description="card photos are upsampled to this")
    frames: int = Field(5, ge=1, le=30, description="live frames compared (best one counts)")
    quality: FaceQualityConfig = Field(default_factory=FaceQualityConfig)


class Decision(StrEnum):
    MATCH = "match"
    NO_MATCH = "no_match"
    REVIEW = "review"
    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    POOR_QUALITY = "poor_quality"


@dataclass(frozen=True)
class CardFace:
    """The card photo, prepared once per card."""

    encoding: np.ndarray
    photo: np.ndarray
    """The photo as read (BGR), for the clerk's side-by-side view."""
    face_px: int
    """Face width in the original photo."""


@dataclass
class FrameVerdict:
    """One live frame's examination."""

    t: float
    quality: FaceQuality
    distance: float | None = None
    box: Box | None = None


@dataclass
class VerificationResult:
    """What the comparison concluded, and on what."""

    decision: Decision
    distance: float | None
    threshold: float
    band: tuple[float, float]
    reasons: list[str]
    frames: list[FrameVerdict]
    best_index: int | None
    best_still: np.ndarray | None = field(repr=False)
    ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision.value,
            "distance": None if self.distance is None else round(self.distance, 4),
            "threshold": self.threshold,
            "review_band": [round(self.band[0], 4), round(self.band[1], 4)],
            "reasons": self.reasons,
            "frames": len(self.frames),
            "frame_distances": [None if f.distance is None else round(f.distance, 4)
                                for f in self.frames],
            "ms": round(self.ms, 1),
        }


def to_rgb(bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def find_faces(engine: FaceEngine, bgr: np.ndarray, detect_width: int
               ) -> tuple[list[Box], np.ndarray]:
    """Faces found on a copy ``detect_width`` wide (cheap), boxes in full-resolution pixels;
    at full resolution when the small copy shows none (a face too small for it)."""
    rgb = to_rgb(bgr)
    h, w = bgr.shape[:2]
    scale = min(1.0, detect_width / w)
    if scale < 1:
        small = cv2.resize(rgb, (round(w * scale), round(h * scale)),
                           interpolation=cv2.INTER_AREA)
        boxes = [b.scaled(1 / scale) for b in engine.detect(small, 0)]
        if boxes:
            return boxes, rgb
    return engine.detect(rgb, 0), rgb


class Verifier:
    """Compares live frames with a card photo. Blocking: call from a thread."""

    def __init__(self, engine: FaceEngine, config: VerifyConfig | None = None) -> None:
        self.engine = engine
        self.config = config or VerifyConfig()

    @property
    def band(self) -> tuple[float, float]:
        c = self.config
        return (c.threshold - c.review_band, c.threshold + c.review_band)

    def prepare_card(self, photo_bgr: np.ndarray) -> CardFace:
        """Encode the card photo; its face (~60 px on a chip photo) is upsampled first,
        since dlib's detector window is 80 px."""
        h, w = photo_bgr.shape[:2]
        factor = max(1.0, self.config.card_min_width / w)
        big = cv2.resize(photo_bgr, (round(w * factor), round(h * factor)),
                         interpolation=cv2.INTER_CUBIC) if factor > 1 else photo_bgr
        rgb = to_rgb(big)
        boxes = self.engine.detect(rgb, 0) or self.engine.detect(rgb, 1)
        if not boxes:
            raise CardPhotoError("no face found in the card photo")
        box = max(boxes, key=lambda b: b.width)  # a printed emblem is smaller than the face
        encoding = self.engine.encode(rgb, [box])[0]
        return CardFace(encoding, photo_bgr, int(box.width / factor))

    def _find(self, bgr: np.ndarray) -> tuple[list[Box], np.ndarray]:
        return find_faces(self.engine, bgr, self.config.detect_width)

    def examine(self, bgr: np.ndarray, card: CardFace | None = None, t: float = 0.0
                ) -> FrameVerdict:
        """Gate one live frame and, if it passes and a card is given, measure the distance."""
        boxes, rgb = self._find(bgr)
        landmarks: Landmarks | None = None
        if len(boxes) == 1:
            landmarks = self.engine.landmarks(rgb, boxes)[0]
        verdict = FrameVerdict(t, assess(bgr, boxes, landmarks, self.config.quality))
        if verdict.quality.ok and card is not None:
            verdict.box = boxes[0]
            encoding = self.engine.encode(rgb, boxes)[0]
            verdict.distance = self.engine.distance(encoding, card.encoding)
        return verdict

    def verify(self, card: CardFace, frames: Iterable[tuple[np.ndarray, float]]
               ) -> VerificationResult:
        """Best of up to ``config.frames`` live frames (image, time) against the card."""
        started = time.perf_counter()
        verdicts: list[FrameVerdict] = []
        images: list[np.ndarray] = []
        for image, t in frames:
            verdicts.append(self.examine(image, card, t))
            images.append(image)
            if len(verdicts) >= self.config.frames:
                break
        low, high = self.band
        scored = [(v.distance, i) for i, v in enumerate(verdicts) if v.distance is not None]
        ms = (time.perf_counter() - started) * 1000
        if not scored:
            gates = Counter(g for v in verdicts for g in v.quality.failed[:1])
            decision = Decision.POOR_QUALITY
            if not verdicts or gates.most_common(1)[0][0] is FaceGate.NO_FACE:
                decision = Decision.NO_FACE
            elif gates.most_common(1)[0][0] is FaceGate.MULTIPLE_FACES:
                decision = Decision.MULTIPLE_FACES
            reasons = [f"{g.value} in {n} of {len(verdicts)} frames" for g, n in
                       gates.most_common()]
            return VerificationResult(decision, None, self.config.threshold, (low, high),
                                      reasons or ["no frames"], verdicts, None, None, ms)
        distance, best = min(scored)
        if distance <= low:
            decision = Decision.MATCH
            reason = f"distance {distance:.3f} <= {low:.2f}"
        elif distance >= high:
            decision = Decision.NO_MATCH
            reason = f"distance {distance:.3f} >= {high:.2f}"
        else:
            decision = Decision.REVIEW
            reason = (f"distance {distance:.3f} within the review band {low:.2f}-{high:.2f}: "
                      "the clerk decides")
        reasons = [reason, f"best of {len(scored)} usable frames out of {len(verdicts)}"]
        return VerificationResult(decision, distance, self.config.threshold, (low, high),
                                  reasons, verdicts, best, images[best], ms)
