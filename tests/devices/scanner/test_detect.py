"""Page detection on SIMULATED scenes with ground truth, and the geometry it rests on."""

from __future__ import annotations

import numpy as np
import pytest

from devices.scanner.detect import PageDetector, baseline_detect
from devices.scanner.geometry import PageKind, classify, iou, order_corners
from devices.scanner.synthetic import Difficulty, SceneSpec, render_scene, scene_set


def test_corners_are_ordered_clockwise_from_top_left() -> None:
    square = np.array([[10, 10], [10, 0], [0, 0], [0, 10]])
    assert order_corners(square).tolist() == [[0, 0], [10, 0], [10, 10], [0, 10]]


def test_iou_of_quads() -> None:
    a = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    assert iou(a, a) == pytest.approx(1.0)
    assert iou(a, a + np.array([5, 0])) == pytest.approx(50 / 150)
    assert iou(a, a + np.array([20, 0])) == 0.0
    assert iou(None, a) == 0.0


def test_page_kinds_by_aspect() -> None:
    assert classify(210, 297, frame_long_side=960) is PageKind.A4_PORTRAIT
    assert classify(297, 210, frame_long_side=960) is PageKind.A4_LANDSCAPE
    assert classify(85.6 * 3, 54 * 3, frame_long_side=960) is PageKind.ID_CARD
    assert classify(300, 300, frame_long_side=960) is PageKind.OTHER


@pytest.mark.parametrize("difficulty", list(Difficulty))
def test_detection_matches_ground_truth(difficulty: Difficulty) -> None:
    specs = [s for s in scene_set(48, seed=3) if s.difficulty is difficulty][:12]
    scores = []
    for spec in specs:
        scene = render_scene(spec)
        found = PageDetector(scene.reference).detect(scene.image)
        scores.append(iou(found.corners if found.found else None, scene.corners))
    floor = {Difficulty.EASY: 0.99, Difficulty.MEDIUM: 0.99, Difficulty.HARD: 0.85}[difficulty]
    assert float(np.mean(scores)) >= floor, scores


def test_detector_beats_the_classic_baseline_on_hard_scenes() -> None:
    ours, classic = [], []
    for i in range(8):
        scene = render_scene(SceneSpec(500 + i, Difficulty.HARD))
        found = PageDetector(scene.reference).detect(scene.image)
        ours.append(iou(found.corners if found.found else None, scene.corners))
        classic.append(iou(baseline_detect(scene.image), scene.corners))
    assert np.mean(ours) > np.mean(classic) + 0.1


def test_detection_without_reference_still_works_on_dark_mats() -> None:
    scene = render_scene(SceneSpec(11, Difficulty.EASY))
    found = PageDetector().detect(scene.image)
    assert found.found and iou(found.corners, scene.corners) > 0.98


def test_empty_mat_has_no_page() -> None:
    scene = render_scene(SceneSpec(12, Difficulty.MEDIUM, page=False))
    assert not PageDetector(scene.reference).detect(scene.image).found
    assert not PageDetector().detect(scene.image).found


def test_id_card_is_recognised_as_such() -> None:
    scene = render_scene(SceneSpec(13, Difficulty.MEDIUM, PageKind.ID_CARD))
    found = PageDetector(scene.reference).detect(scene.image)
    assert found.kind is PageKind.ID_CARD


def test_hand_holding_the_page_does_not_bend_the_quad() -> None:
    scene = render_scene(SceneSpec(14, Difficulty.MEDIUM, hand=True))
    found = PageDetector(scene.reference).detect(scene.image)
    assert iou(found.corners, scene.corners) > 0.97


def test_full_resolution_refinement_is_subpixel_accurate() -> None:
    scene = render_scene(SceneSpec(15, Difficulty.EASY, size=(1920, 1440)))
    found = PageDetector(scene.reference).detect(scene.image)
    assert found.corners is not None and scene.corners is not None
    error = np.linalg.norm(found.corners - scene.corners, axis=1)
    assert error.max() < 2.5, error
