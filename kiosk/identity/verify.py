"""The comparison: the card photo prepared once, live frames gated, the best of them fused
into one encoding, and a decision from its distance with a review band where the clerk decides.

The chip photo is small (face ~60 px) and JPEG-blurred, so its encoding is noisy: it is the
mean of encodings at two upsampled sizes, mirrored and not, each with dlib's jitter (once
per card). A live frame is encoded once (``mirror_live`` adds its mirror image at twice the
cost). The ``fuse`` best usable live frames (by sharpness,
pose and size; the liveness challenge hands over its frontal frames) are averaged into one
encoding; a frame far from the card among them (someone else stepping in) sends the case to
the clerk instead of being averaged away.

face_recognition over-accepts among East Asian faces (its issues #612, #431; dlib #480:
different Chinese people well under its usual 0.6), so the default threshold is strict (0.47):
a match needs the fused distance <= threshold - match_margin (0.445), up to threshold +
review_band (0.52) the clerk decides with the card photo and the live stills side by side,
and above it the face does not match. ``tongban face calibrate`` sets these on a province's own
pair set.
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
from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    review_band: float = Field(0.05, ge=0, lt=0.5, description="up to this above the threshold: "
                                                               "the clerk decides")
    match_margin: float = Field(0.025, ge=0, lt=0.5, description="a match needs the fused "
                                                                 "distance this far below the "
                                                                 "threshold (between: review)")
    detect_width: int = Field(320, ge=160, le=1920, description="live frames are searched for "
                                                                "faces at this width")
    card_min_width: int = Field(400, ge=102, description="card photos are upsampled to this")
    card_widths: list[int] = Field(default_factory=lambda: [300, 400], min_length=1,
                                   max_length=4, description="card photo encoded upsampled to "
                                                             "each width (encodings averaged)")
    card_jitters: int = Field(4, ge=1, le=100, description="dlib jitters per card encoding")
    mirror: bool = Field(True, description="encode the card photo mirrored too (averaged)")
    mirror_live: bool = Field(False, description="encode live frames mirrored too (doubles a "
                                                 "frame's encoding time; fusing frames does "
                                                 "most of the same)")
    frames: int = Field(5, ge=1, le=30, description="fresh live frames examined after liveness")
    fuse: int = Field(5, ge=1, le=30, description="best usable live frames averaged into one "
                                                  "encoding")
    quality: FaceQualityConfig = Field(default_factory=FaceQualityConfig)

    @model_validator(mode="after")
    def _bands(self) -> VerifyConfig:
        if self.match_margin >= self.threshold:
            raise ValueError("match_margin must be below the threshold")
        return self


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
    encoding: np.ndarray | None = field(default=None, repr=False)

    @property
    def rank(self) -> float:
        """How good a frame this is to compare (higher is better): sharp, frontal, large."""
        q = self.quality
        frontal = 1.0 - min(1.0, abs(q.yaw or 0.0) / 0.25)
        return min(q.sharpness, 400.0) / 400.0 + frontal + min(q.face_px, 300) / 300.0


@dataclass
class VerificationResult:
    """What the comparison concluded, and on what."""

    decision: Decision
    distance: float | None
    """The fused encoding's distance to the card (what decides)."""
    threshold: float
    band: tuple[float, float]
    reasons: list[str]
    frames: list[FrameVerdict]
    best_index: int | None
    best_still: np.ndarray | None = field(repr=False)
    ms: float = 0.0
    fused: list[int] = field(default_factory=list)
    """Indices of the frames averaged into the fused encoding, best first."""
    stills: list[np.ndarray] = field(default_factory=list, repr=False)
    """Those frames' images (the evidence the desk re-checks)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision.value,
            "distance": None if self.distance is None else round(self.distance, 4),
            "threshold": self.threshold,
            "review_band": [round(self.band[0], 4), round(self.band[1], 4)],
            "reasons": self.reasons,
            "frames": len(self.frames),
            "fused_frames": len(self.fused),
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


def mirrored(box: Box, width: int) -> Box:
    """``box`` in the horizontally mirrored image ``width`` pixels wide."""
    return Box(box.top, width - box.left, box.bottom, width - box.right)


def encode_face(engine: FaceEngine, rgb: np.ndarray, box: Box, *, mirror: bool,
                jitters: int = 1) -> np.ndarray:
    """The face's encoding, averaged with its mirror image's where ``mirror``: a face and its
    mirror are the same person, and the average is steadier than either."""
    encodings = [engine.encode(rgb, [box], jitters=jitters)[0]]
    if mirror:
        flipped = np.ascontiguousarray(rgb[:, ::-1])
        encodings.append(engine.encode(flipped, [mirrored(box, rgb.shape[1])],
                                       jitters=jitters)[0])
    return np.asarray(np.mean(encodings, axis=0))


class Verifier:
    """Compares live frames with a card photo. Blocking: call from a thread."""

    def __init__(self, engine: FaceEngine, config: VerifyConfig | None = None) -> None:
        self.engine = engine
        self.config = config or VerifyConfig()

    @property
    def band(self) -> tuple[float, float]:
        """(match at or below, no match at or above); between, the clerk decides."""
        c = self.config
        return (c.threshold - c.match_margin, c.threshold + c.review_band)

    def decide(self, distance: float) -> tuple[Decision, str]:
        low, high = self.band
        if distance <= low:
            return Decision.MATCH, f"distance {distance:.3f} <= {low:.3f}"
        if distance >= high:
            return Decision.NO_MATCH, f"distance {distance:.3f} >= {high:.3f}"
        return Decision.REVIEW, (f"distance {distance:.3f} within the review band "
                                 f"{low:.3f}-{high:.3f}: the clerk decides")

    def prepare_card(self, photo_bgr: np.ndarray) -> CardFace:
        """Encode the card photo. Its face (~60 px on a chip photo, below dlib's 80 px
        detector window) is upsampled to each of ``card_widths``, encoded there as itself
        and mirrored with ``card_jitters`` jitters, and the encodings are averaged: the
        blur and blocks of a chip photo weigh less in the mean than in any one of them."""
        h, w = photo_bgr.shape[:2]
        encodings: list[np.ndarray] = []
        face_px = 0
        for width in self.config.card_widths:
            factor = max(1.0, width / w)
            big = cv2.resize(photo_bgr, (round(w * factor), round(h * factor)),
                             interpolation=cv2.INTER_CUBIC) if factor > 1 else photo_bgr
            rgb = to_rgb(big)
            boxes = self.engine.detect(rgb, 0) or self.engine.detect(rgb, 1)
            if not boxes:
                continue
            box = max(boxes, key=lambda b: b.width)  # a printed emblem is smaller than the face
            face_px = max(face_px, int(box.width / factor))
            encodings.append(encode_face(self.engine, rgb, box, mirror=self.config.mirror,
                                         jitters=self.config.card_jitters))
        if not encodings:
            raise CardPhotoError("no face found in the card photo")
        return CardFace(np.asarray(np.mean(encodings, axis=0)), photo_bgr, face_px)

    def _find(self, bgr: np.ndarray) -> tuple[list[Box], np.ndarray]:
        return find_faces(self.engine, bgr, self.config.detect_width)

    def examine(self, bgr: np.ndarray, card: CardFace | None = None, t: float = 0.0
                ) -> FrameVerdict:
        """Gate one live frame and, if it passes and a card is given, encode it and measure
        its own distance to the card."""
        boxes, rgb = self._find(bgr)
        landmarks: Landmarks | None = None
        if len(boxes) == 1:
            landmarks = self.engine.landmarks(rgb, boxes)[0]
        verdict = FrameVerdict(t, assess(bgr, boxes, landmarks, self.config.quality))
        if verdict.quality.ok and card is not None:
            verdict.box = boxes[0]
            verdict.encoding = encode_face(self.engine, rgb, boxes[0],
                                           mirror=self.config.mirror_live)
            verdict.distance = self.engine.distance(verdict.encoding, card.encoding)
        return verdict

    def verify(self, card: CardFace, frames: Iterable[tuple[np.ndarray, float]],
               *, limit: int | None = None) -> VerificationResult:
        """Up to ``limit`` (default ``config.frames``) live frames (image, time) against the
        card: the ``config.fuse`` best usable ones are averaged into one encoding."""
        started = time.perf_counter()
        limit = self.config.frames if limit is None else limit
        verdicts: list[FrameVerdict] = []
        images: list[np.ndarray] = []
        for image, t in frames:
            verdicts.append(self.examine(image, card, t))
            images.append(image)
            if len(verdicts) >= limit:
                break
        low, high = self.band
        usable = sorted((i for i, v in enumerate(verdicts) if v.encoding is not None),
                        key=lambda i: -verdicts[i].rank)
        if not usable:
            ms = (time.perf_counter() - started) * 1000
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
        chosen = usable[:self.config.fuse]
        fused = np.mean([v.encoding for i in chosen if (v := verdicts[i]).encoding is not None],
                        axis=0)
        distance = self.engine.distance(fused, card.encoding)
        decision, reason = self.decide(distance)
        reasons = [reason, f"{len(chosen)} of {len(usable)} usable frames fused "
                           f"({len(verdicts)} examined)"]
        outliers = [i for i in chosen if (verdicts[i].distance or 0.0) >= high]
        if decision is Decision.MATCH and outliers:
            # someone else in some of the frames: not averaged away, the clerk looks
            decision = Decision.REVIEW
            reasons.insert(0, f"{len(outliers)} of the fused frames alone do not match: "
                              "the clerk decides")
        ms = (time.perf_counter() - started) * 1000
        best = chosen[0]
        return VerificationResult(decision, distance, self.config.threshold, (low, high),
                                  reasons, verdicts, best, images[best], ms, fused=chosen,
                                  stills=[images[i] for i in chosen])
