"""Each quality gate on a scene made to trip it, and auto-capture timing."""

from __future__ import annotations

import cv2
import numpy as np

from devices.scanner.autocapture import AutoCapture, CaptureState
from devices.scanner.detect import Detection, PageDetector
from devices.scanner.quality import MESSAGES, Gate, QualityGates
from devices.scanner.synthetic import Difficulty, SceneSpec, render_scene


def _assess(image: np.ndarray, reference: np.ndarray,
            previous: np.ndarray | None = None) -> list[Gate]:
    detection = PageDetector(reference).detect(image)
    return QualityGates().assess(image, detection, previous).failed


def test_a_good_page_passes_every_gate() -> None:
    scene = render_scene(SceneSpec(21, Difficulty.EASY))
    assert _assess(scene.image, scene.reference) == []


def test_no_page() -> None:
    scene = render_scene(SceneSpec(21, Difficulty.EASY, page=False))
    assert _assess(scene.image, scene.reference) == [Gate.NO_PAGE]


def test_page_not_fully_inside() -> None:
    scene = render_scene(SceneSpec(22, Difficulty.EASY, offset=(0.0, 0.35)))
    assert Gate.NOT_INSIDE in _assess(scene.image, scene.reference)


def test_moving_page() -> None:
    scene = render_scene(SceneSpec(23, Difficulty.EASY))
    assert scene.corners is not None
    assert Gate.MOVING in _assess(scene.image, scene.reference, scene.corners + 15)
    assert Gate.MOVING not in _assess(scene.image, scene.reference, scene.corners + 0.5)


def test_blurred_page() -> None:
    scene = render_scene(SceneSpec(24, Difficulty.EASY))
    blurred = cv2.GaussianBlur(scene.image, (0, 0), 3.5)
    assert Gate.BLURRED in _assess(blurred, scene.reference)


def test_glare_on_the_page() -> None:
    scene = render_scene(SceneSpec(25, Difficulty.EASY))
    assert scene.corners is not None
    image = scene.image.copy()
    cx, cy = scene.corners.mean(axis=0).astype(int)
    cv2.circle(image, (int(cx), int(cy)), 40, (255, 255, 255), -1)
    assert Gate.GLARE in _assess(image, scene.reference)


def test_too_dark() -> None:
    scene = render_scene(SceneSpec(26, Difficulty.EASY))
    dark = (scene.image.astype(np.float32) * 0.22).astype(np.uint8)
    assert Gate.TOO_DARK in _assess(dark, (scene.reference * 0.22).astype(np.uint8))


def test_every_gate_has_a_short_chinese_sentence() -> None:
    for gate in Gate:
        zh, en = MESSAGES[gate]
        assert 4 <= len(zh) <= 24 and en.endswith(".")
    assert MESSAGES[Gate.GLARE][1] == "Glare: tilt the page or move the lamp."


def _detection(corners: np.ndarray) -> Detection:
    return Detection(True, corners, 1.0)


SQUARE = np.array([[100, 100], [400, 100], [400, 500], [100, 500]], float)


def test_a_stable_page_is_captured_once() -> None:
    auto = AutoCapture(stable_seconds=1.0)
    from devices.scanner.quality import QualityReport

    states = [auto.update(i / 10, _detection(SQUARE + np.random.default_rng(i).normal(0, 0.5,
                                                                                       (4, 2))),
                          QualityReport()).state for i in range(40)]
    assert states.count(CaptureState.CAPTURE) == 1
    first = states.index(CaptureState.CAPTURE)
    assert 10 <= first <= 11  # one second after the page came to rest, at 10 frames a second
    assert all(s is CaptureState.CAPTURED for s in states[first + 1:])


def test_a_moving_page_is_never_captured() -> None:
    from devices.scanner.quality import QualityReport

    auto = AutoCapture(stable_seconds=1.0)
    states = [auto.update(i / 10, _detection(SQUARE + np.array([i * 6, 0])), QualityReport()).state
              for i in range(50)]
    assert CaptureState.CAPTURE not in states


def test_failing_gate_holds_capture_back_and_removal_rearms() -> None:
    from devices.scanner.quality import QualityReport

    auto = AutoCapture(stable_seconds=0.5)
    for i in range(10):
        decision = auto.update(i / 10, _detection(SQUARE), QualityReport([Gate.GLARE]))
        assert decision.state is CaptureState.ADJUST
    captured = [auto.update(1 + i / 10, _detection(SQUARE), QualityReport()).state
                for i in range(10)]
    assert captured.count(CaptureState.CAPTURE) == 1
    for i in range(8):  # the page is taken away ...
        auto.update(2 + i / 10, Detection(False), QualityReport([Gate.NO_PAGE]))
    again = [auto.update(3 + i / 10, _detection(SQUARE), QualityReport()).state
             for i in range(10)]
    assert again.count(CaptureState.CAPTURE) == 1  # ... and the next one is captured


def test_manual_capture_ignores_the_gates() -> None:
    from devices.scanner.quality import QualityReport

    auto = AutoCapture(stable_seconds=5)
    auto.request_manual()
    decision = auto.update(0, _detection(SQUARE), QualityReport([Gate.BLURRED]))
    assert decision.capture


def test_manual_capture_without_a_page_takes_the_whole_frame() -> None:
    from devices.scanner.quality import QualityReport

    auto = AutoCapture()
    auto.request_manual()
    assert auto.update(0, Detection(False), QualityReport([Gate.NO_PAGE])).capture
    assert not auto.update(0.1, Detection(False), QualityReport([Gate.NO_PAGE])).capture
