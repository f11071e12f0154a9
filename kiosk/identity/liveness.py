"""Liveness: an active challenge (turn left, turn right, and blink where the 68-point landmark
model is enabled), steps in random order, each with a time limit, judged from landmark geometry
over frames; plus passive evidence (a frame sequence with no motion at all), never decisive
on its own.

A printed photo or a phone held still cannot turn its head: it fails at the first step's time
limit. What this cannot stop is a video that acts out the prompts in time; that needs a depth
or infrared camera, which these kiosks do not have.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from kiosk.identity.engine import FaceEngine, Landmarks
from kiosk.identity.quality import yaw_of
from kiosk.identity.verify import find_faces


class LivenessStep(StrEnum):
    TURN_LEFT = "turn_left"
    TURN_RIGHT = "turn_right"
    BLINK = "blink"


PROMPTS: dict[LivenessStep, tuple[str, str]] = {
    LivenessStep.TURN_LEFT: ("请慢慢向左转头", "Turn your head slowly to your left."),
    LivenessStep.TURN_RIGHT: ("请慢慢向右转头", "Turn your head slowly to your right."),
    LivenessStep.BLINK: ("请眨眨眼", "Blink your eyes."),
}


class LivenessConfig(BaseModel):
    """``[face.liveness]``."""

    model_config = ConfigDict(extra="forbid")

    steps: list[LivenessStep] = Field(default_factory=lambda: [LivenessStep.TURN_LEFT,
                                                               LivenessStep.TURN_RIGHT])
    use_68_point_landmarks: bool = Field(
        False, description="adds the blink step; the 68-point model's training data restricts "
                           "commercial use")
    random_order: bool = True
    extra_turns: int = Field(1, ge=0, le=3, description="up to this many more turns, drawn at "
                                                        "random per challenge (each one the "
                                                        "other way from the last)")
    step_timeout: float = Field(6.0, gt=0, le=60, description="seconds per step")
    turn_threshold: float = Field(0.1, gt=0, description="yaw change, in eye distances")
    blink_ear: float = Field(0.2, gt=0, lt=1, description="eye aspect ratio of a closed eye")
    blink_ratio: float = Field(0.7, gt=0, lt=1, description="closed: below this fraction of "
                                                            "the person's open-eye ratio")
    hold_frames: int = Field(2, ge=1, le=10, description="frames a turn must be held")
    mirrored: bool = Field(False, description="the camera image is mirrored")
    detect_width: int = Field(320, ge=160, le=1920)
    max_face_change: float = Field(0.6, gt=0, description="encoding distance between the first "
                                                          "and last frame of the challenge")
    keep_frontal: int = Field(3, ge=0, le=10, description="frontal frames handed on to the "
                                                          "comparison (the sharpest)")


@dataclass
class StepOutcome:
    step: LivenessStep
    started_at: float
    ended_at: float | None = None
    passed: bool = False
    peak: float = 0.0
    """Largest yaw change (turns) or deepest eye closure (blink) seen."""
    evidence: np.ndarray | None = field(default=None, repr=False)
    """The frame in which the step was judged done (the desk re-checks it)."""
    evidence_t: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step.value, "started_at": round(self.started_at, 3),
                "ended_at": None if self.ended_at is None else round(self.ended_at, 3),
                "passed": self.passed, "peak": round(self.peak, 3)}


@dataclass
class LivenessResult:
    passed: bool
    steps: list[StepOutcome]
    reasons: list[str]
    frames: int
    motion_px: float
    """Landmark movement over the whole challenge (passive evidence)."""
    simulated: bool = False
    challenge_id: str = ""
    """Random, one per challenge: a result is accepted for the challenge issued, once."""
    sequence: list[LivenessStep] = field(default_factory=list)
    """The steps asked, in the order asked."""
    mirrored: bool = False
    frontal: list[tuple[np.ndarray, float]] = field(default_factory=list, repr=False)
    """The sharpest frontal frames seen (image, time), for the comparison."""
    start_frame: tuple[np.ndarray, float] | None = field(default=None, repr=False)
    """The first frame with a face (the pose every turn is measured from)."""

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "steps": [s.to_json() for s in self.steps],
                "reasons": self.reasons, "frames": self.frames,
                "motion_px": round(self.motion_px, 2), "simulated": self.simulated,
                "challenge_id": self.challenge_id,
                "sequence": [s.value for s in self.sequence]}


@dataclass
class LivenessStatus:
    """What the screen shows now."""

    step: LivenessStep | None
    prompt_zh: str | None
    prompt_en: str | None
    index: int
    total: int
    result: LivenessResult | None = None

    @property
    def done(self) -> bool:
        return self.result is not None


def eye_aspect_ratio(points: list[tuple[int, int]]) -> float:
    """(|p2-p6| + |p3-p5|) / 2|p1-p4| over the six points of one eye (68-point model)."""
    p = np.asarray(points, float)
    return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4]))
                 / (2 * np.linalg.norm(p[0] - p[3]) + 1e-9))


@dataclass
class _Tracker:
    outcome: StepOutcome
    baseline: list[float] = field(default_factory=list)
    held: int = 0


class LivenessChallenge:
    """Feed it frames as they come; it says what to prompt and, at the end, the result."""

    def __init__(self, engine: FaceEngine, config: LivenessConfig | None = None,
                 rng: random.Random | None = None, *, simulated: bool = False) -> None:
        self.engine = engine
        self.config = config or LivenessConfig()
        steps = list(self.config.steps)
        if self.config.use_68_point_landmarks and LivenessStep.BLINK not in steps:
            steps.append(LivenessStep.BLINK)
        if not self.config.use_68_point_landmarks:
            steps = [s for s in steps if s is not LivenessStep.BLINK]
        chooser = rng or random.SystemRandom()
        if self.config.random_order:
            chooser.shuffle(steps)
            turns = (LivenessStep.TURN_LEFT, LivenessStep.TURN_RIGHT)
            extra = self.config.extra_turns if any(s in turns for s in steps) else 0
            for _ in range(chooser.randint(0, extra)):
                last = next((s for s in reversed(steps) if s in turns), None)
                steps.append(turns[1] if last is turns[0] else turns[0])
        self.steps = steps
        self.challenge_id = secrets.token_hex(8)
        self.simulated = simulated
        self._frontal: list[tuple[float, np.ndarray, float]] = []
        self._start_frame: tuple[np.ndarray, float] | None = None
        self._index = 0
        self._tracker: _Tracker | None = None
        self._outcomes: list[StepOutcome] = []
        self._points: list[np.ndarray] = []
        self._frames = 0
        self._first_encoding: np.ndarray | None = None
        self._first_yaw = 0.0
        self._last_face: tuple[np.ndarray, Any] | None = None
        self._result: LivenessResult | None = None

    def status(self) -> LivenessStatus:
        if self._result is not None or self._index >= len(self.steps):
            return LivenessStatus(None, None, None, self._index, len(self.steps), self._result)
        step = self.steps[self._index]
        zh, en = PROMPTS[step]
        return LivenessStatus(step, zh, en, self._index, len(self.steps))

    def _finish(self, passed: bool, reasons: list[str]) -> LivenessStatus:
        motion = 0.0
        if len(self._points) > 1:
            pts = np.stack(self._points)
            motion = float(np.abs(pts - pts[0]).max())
        if motion < 1.0:
            reasons.append("no motion at all across the frames (a photo or a still screen?)")
        # the same person from start to end (compared on frontal frames only: a turned face
        # encodes differently)
        if passed and self._first_encoding is not None and self._last_face is not None:
            rgb, box = self._last_face
            last = self.engine.encode(rgb, [box])[0]
            if self.engine.distance(last, self._first_encoding) > self.config.max_face_change:
                passed = False
                reasons.append("the face changed during the challenge")
        self._result = LivenessResult(
            passed, self._outcomes, reasons, self._frames, motion, self.simulated,
            self.challenge_id, list(self.steps), self.config.mirrored,
            [(image, t) for _, image, t in sorted(self._frontal, key=lambda x: -x[0])],
            self._start_frame)
        return LivenessStatus(None, None, None, self._index, len(self.steps), self._result)

    def feed(self, bgr: np.ndarray, t: float) -> LivenessStatus:
        """Look at one frame taken at time ``t`` (seconds)."""
        if self._result is not None:
            return self.status()
        if self._index >= len(self.steps):
            return self._finish(True, ["every step done"])
        self._frames += 1
        step = self.steps[self._index]
        if self._tracker is None:
            self._tracker = _Tracker(StepOutcome(step, t))
        tracker = self._tracker
        if t - tracker.outcome.started_at > self.config.step_timeout:
            tracker.outcome.ended_at = t
            self._outcomes.append(tracker.outcome)
            return self._finish(False, [f"{step.value} not done within "
                                        f"{self.config.step_timeout:.0f} s"])
        boxes, rgb = find_faces(self.engine, bgr, self.config.detect_width)
        if len(boxes) > 1:
            tracker.outcome.ended_at = t
            self._outcomes.append(tracker.outcome)
            return self._finish(False, ["more than one face during the challenge"])
        if not boxes:
            return self.status()
        detailed = step is LivenessStep.BLINK
        marks: Landmarks = self.engine.landmarks(rgb, boxes, detailed=detailed)[0]
        yaw = yaw_of(marks)
        if self._first_encoding is None:
            self._first_encoding = self.engine.encode(rgb, boxes)[0]
            self._first_yaw = yaw
            self._start_frame = (bgr, t)
        elif abs(yaw - self._first_yaw) < 0.04:  # frontal again: a fair comparison later
            self._last_face = (rgb, boxes[0])
        if abs(yaw) < 0.12 and self.config.keep_frontal:
            self._keep_frontal(bgr, boxes[0], t)
        self._points.append(np.concatenate([marks.centre(k) for k in ("left_eye", "right_eye")]
                                           + [marks.centre("nose_tip")]))
        if self._judge(step, marks, tracker):
            tracker.outcome.passed = True
            tracker.outcome.ended_at = t
            tracker.outcome.evidence, tracker.outcome.evidence_t = bgr, t
            self._outcomes.append(tracker.outcome)
            self._tracker = None
            self._index += 1
            if self._index >= len(self.steps):
                return self._finish(True, ["every step done"])
        return self.status()

    def _keep_frontal(self, bgr: np.ndarray, box: Any, t: float) -> None:
        """Keep the sharpest frontal frames (variance of the Laplacian on the face)."""
        import cv2

        h, w = bgr.shape[:2]
        face = bgr[max(0, box.top):min(h, box.bottom), max(0, box.left):min(w, box.right)]
        if face.size == 0:
            return
        gray = cv2.cvtColor(cv2.resize(face, (160, 160)), cv2.COLOR_BGR2GRAY)
        sharpness = float(cv2.Laplacian(gray, cv2.CV_64F).var())
        self._frontal.append((sharpness, bgr, t))
        self._frontal.sort(key=lambda x: -x[0])
        del self._frontal[self.config.keep_frontal:]

    def _judge(self, step: LivenessStep, marks: Landmarks, tracker: _Tracker) -> bool:
        if step is LivenessStep.BLINK:  # closed in one frame, open again in a later one
            ear = min(eye_aspect_ratio(marks.points["left_eye"]),
                      eye_aspect_ratio(marks.points["right_eye"]))
            if len(tracker.baseline) < 2:  # this person's open eyes
                tracker.baseline.append(ear)
                return False
            open_ear = float(np.median(tracker.baseline))
            closure = 1 - ear / max(open_ear, 1e-6)
            tracker.outcome.peak = max(tracker.outcome.peak, closure)
            if ear < min(self.config.blink_ear, open_ear * self.config.blink_ratio):
                tracker.held = 1
                return False
            return tracker.held > 0 and ear >= open_ear * 0.85
        yaw = yaw_of(marks)
        if len(tracker.baseline) < 2:  # the first frames of a step set where "ahead" is
            tracker.baseline.append(yaw)
            return False
        base = float(np.median(tracker.baseline))
        # the person's left is the image's right in an unmirrored camera
        direction = 1.0 if step is LivenessStep.TURN_LEFT else -1.0
        if self.config.mirrored:
            direction = -direction
        change = (yaw - base) * direction
        tracker.outcome.peak = max(tracker.outcome.peak, change)
        tracker.held = tracker.held + 1 if change >= self.config.turn_threshold else 0
        return tracker.held >= self.config.hold_frames
