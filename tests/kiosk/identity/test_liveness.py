"""Liveness: a SIMULATED person acting out the prompts passes; a still photo fails."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest

from devices.facecam import PromptFollower, SimulatedFace
from kiosk.identity.engine import Box, DlibEngine, FaceEngine, Landmarks
from kiosk.identity.liveness import LivenessChallenge, LivenessConfig, LivenessStep

from .conftest import load


def _run(challenge: LivenessChallenge, next_frame: object, fps: float = 10,
         limit: float = 30) -> tuple[float, object]:
    status = challenge.status()
    t = 0.0
    while not status.done and t < limit:
        step = status.step.value if status.step else None
        status = challenge.feed(next_frame(step, t), t)  # type: ignore[operator]
        t += 1 / fps
    assert status.result is not None
    return t, status.result


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_person_following_the_prompts_passes_in_a_few_seconds(
        faces: Path, engine: DlibEngine, seed: int) -> None:
    person = PromptFollower(SimulatedFace(load(faces, "obama-480p.jpg"), seed))
    challenge = LivenessChallenge(engine, LivenessConfig(), random.Random(seed), simulated=True)
    elapsed, result = _run(challenge, person.frame)
    assert result.passed, result.reasons  # type: ignore[attr-defined]
    assert elapsed < 6.0
    steps = result.steps  # type: ignore[attr-defined]
    assert {s.step for s in steps} == {LivenessStep.TURN_LEFT, LivenessStep.TURN_RIGHT}
    assert [s.step for s in steps] == result.sequence  # type: ignore[attr-defined]
    assert all(s.passed and s.ended_at is not None and s.ended_at >= s.started_at
               for s in steps)
    # the evidence the desk re-checks: each step's frame at its time, frontal frames kept
    assert all(s.evidence is not None and s.evidence_t == s.ended_at for s in steps)
    assert 1 <= len(result.frontal) <= 3  # type: ignore[attr-defined]
    assert result.simulated  # type: ignore[attr-defined]


def test_each_challenge_is_random_and_has_its_own_id(engine: DlibEngine) -> None:
    challenges = [LivenessChallenge(engine, rng=random.Random(i)) for i in range(40)]
    orders = {tuple(c.steps) for c in challenges}
    assert len(orders) == 4  # left-right, right-left, and one more turn back either way
    assert all(a != b for order in orders for a, b in itertools.pairwise(order))
    assert len({c.challenge_id for c in challenges}) == 40
    fixed = LivenessConfig(random_order=False)
    assert LivenessChallenge(engine, fixed).steps == [LivenessStep.TURN_LEFT,
                                                     LivenessStep.TURN_RIGHT]


def test_a_still_photo_fails(faces: Path, engine: DlibEngine) -> None:
    photo = load(faces, "obama.jpg")
    config = LivenessConfig(step_timeout=2.0)
    _, result = _run(LivenessChallenge(engine, config, random.Random(0)),
                     lambda step, t: photo)
    assert not result.passed  # type: ignore[attr-defined]
    reasons = " ".join(result.reasons)  # type: ignore[attr-defined]
    assert "not done within 2 s" in reasons
    assert "no motion at all" in reasons  # passive evidence, reported beside the active verdict


def test_a_photo_waved_about_without_turning_fails(faces: Path, engine: DlibEngine) -> None:
    face = SimulatedFace(load(faces, "obama-480p.jpg"), 4)
    config = LivenessConfig(step_timeout=2.0)
    _, result = _run(LivenessChallenge(engine, config, random.Random(0)),
                     lambda step, t: face.render(jitter=4.0))  # moves, never turns
    assert not result.passed  # type: ignore[attr-defined]
    assert result.motion_px > 1.0  # type: ignore[attr-defined]


class ScriptedEngine(FaceEngine):
    """A stand-in engine whose eyes open and close on a script (for the blink logic only)."""

    name = "scripted"

    def __init__(self, closed_at: set[int]) -> None:
        self.closed_at = closed_at
        self.calls = 0

    @property
    def versions(self) -> dict[str, str]:
        return {"engine": self.name}

    def detect(self, rgb: np.ndarray, upsample: int = 0) -> list[Box]:
        return [Box(100, 300, 300, 100)]

    def landmarks(self, rgb: np.ndarray, boxes: list[Box], *, detailed: bool = False
                  ) -> list[Landmarks]:
        self.calls += 1
        lid = 1 if self.calls in self.closed_at else 6
        def eye(x: int) -> list[tuple[int, int]]:
            return [(x, 150), (x + 8, 150 - lid), (x + 16, 150 - lid), (x + 24, 150),
                    (x + 16, 150 + lid), (x + 8, 150 + lid)]
        return [Landmarks({"left_eye": eye(220), "right_eye": eye(140),
                           "nose_tip": [(196, 200)]})]

    def encode(self, rgb: np.ndarray, boxes: list[Box], *, jitters: int = 1
               ) -> list[np.ndarray]:
        return [np.zeros(128)]


def test_blink_needs_closed_then_open_eyes() -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    config = LivenessConfig(steps=[], use_68_point_landmarks=True, step_timeout=3)
    blinking = LivenessChallenge(ScriptedEngine(closed_at={5, 6}), config)
    assert blinking.steps == [LivenessStep.BLINK]
    _, result = _run(blinking, lambda step, t: frame)
    assert result.passed, result.reasons  # type: ignore[attr-defined]
    staring = LivenessChallenge(ScriptedEngine(closed_at=set()), config)
    _, result = _run(staring, lambda step, t: frame)
    assert not result.passed  # type: ignore[attr-defined]
    shut = LivenessChallenge(ScriptedEngine(closed_at=set(range(4, 100))), config)
    _, result = _run(shut, lambda step, t: frame)
    assert not result.passed  # eyes that close and never open again are no blink


def test_68_point_landmarks_measure_open_eyes(faces: Path, engine: DlibEngine) -> None:
    from kiosk.identity.liveness import eye_aspect_ratio
    from kiosk.identity.verify import find_faces

    boxes, rgb = find_faces(engine, load(faces, "biden2.jpg"), 320)
    marks = engine.landmarks(rgb, boxes, detailed=True)[0]
    ear = eye_aspect_ratio(marks.points["left_eye"])
    assert 0.15 < ear < 0.45
    assert LivenessChallenge(engine, LivenessConfig()).steps.count(LivenessStep.BLINK) == 0


def test_someone_else_finishing_the_challenge_fails(faces: Path, engine: DlibEngine) -> None:
    first = PromptFollower(SimulatedFace(load(faces, "obama-480p.jpg"), 6))
    second = PromptFollower(SimulatedFace(load(faces, "biden2.jpg"), 6))
    challenge = LivenessChallenge(engine, LivenessConfig(), random.Random(6))
    frames: list[np.ndarray] = []

    def swap(step: str | None, t: float) -> np.ndarray:
        who = first if not frames else second
        frame = who.frame(step, t)
        if step is None or t > 0.3:
            frames.append(frame)
        return frame

    _, result = _run(challenge, swap)
    assert not result.passed  # type: ignore[attr-defined]


def test_two_faces_fail_the_challenge(faces: Path, engine: DlibEngine) -> None:
    _, result = _run(LivenessChallenge(engine, LivenessConfig(), random.Random(0)),
                     lambda step, t: load(faces, "two_people.jpg"))
    assert not result.passed  # type: ignore[attr-defined]
    assert "more than one face" in result.reasons[0]  # type: ignore[attr-defined]
