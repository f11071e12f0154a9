"""The second SIMULATED scene generator: deterministic, split by seed, and its quads are where
the paper is in the pixels (checked against the empty-mat frame, not the renderer's maths)."""

from __future__ import annotations

import cv2
import numpy as np

from devices.scanner.geometry import PageKind, order_corners
from devices.scanner.scenes2 import (
    Level,
    MatKind,
    ShadowKind,
    Spec2,
    Split,
    render_scene2,
    scene_set2,
)


def _band(shape: tuple[int, int], quad: np.ndarray, offset: float) -> np.ndarray:
    """A thin ring along the quad, moved ``offset`` px outward (negative: inward)."""
    centre = quad.mean(axis=0)
    def scaled(d: float) -> np.ndarray:
        direction = quad - centre
        unit = direction / np.linalg.norm(direction, axis=1, keepdims=True)
        return np.round(quad + unit * d).astype(np.int32)
    outer = cv2.fillConvexPoly(np.zeros(shape, np.uint8), scaled(offset + 1.5), 1)
    inner = cv2.fillConvexPoly(np.zeros(shape, np.uint8), scaled(offset - 1.5), 1)
    return (outer > 0) & (inner == 0)


def test_scenes_are_deterministic_in_their_seed() -> None:
    spec = Spec2(41, Level.HARD, PageKind.ID_CARD)
    a, b = render_scene2(spec), render_scene2(spec)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.reference, b.reference)
    assert np.array_equal(a.corners, b.corners)
    assert a.factors == b.factors
    assert not np.array_equal(a.image, render_scene2(Spec2(43, Level.HARD, PageKind.ID_CARD)).image)


def test_tuning_and_held_out_seeds_are_disjoint() -> None:
    tune = {s.seed for s in scene_set2(200, Split.TUNE)}
    held = {s.seed for s in scene_set2(200, Split.HELD_OUT)}
    assert len(tune) == len(held) == 200
    assert not tune & held
    assert all(seed % 2 == 1 for seed in held)


def test_the_true_quad_is_the_paper_edge_in_the_pixels() -> None:
    # unobstructed scenes: inside the quad the frame is brighter than the empty mat (paper),
    # just outside it is the empty mat again, on dark and light mats, A4 and cards
    for i, mat in enumerate([MatKind.DARK, MatKind.LIGHT, MatKind.STRIPED, MatKind.CLUTTERED]):
        for kind in (PageKind.A4_PORTRAIT, PageKind.A4_LANDSCAPE, PageKind.ID_CARD):
            scene = render_scene2(Spec2(100 + 2 * i, Level.MEDIUM, kind, mat=mat,
                                        shadow=ShadowKind.NONE, glare=False, overlap=False))
            image = scene.image.astype(np.float32).mean(axis=2) + 1
            reference = scene.reference.astype(np.float32).mean(axis=2) + 1
            ratio = np.log(image / reference)
            shape = image.shape
            quad = order_corners(scene.corners)
            inside = float(np.median(ratio[_band(shape, quad, -4)]))
            outside = float(np.median(ratio[_band(shape, quad, 4)]))
            assert inside > 0.05, (mat, kind, inside)
            assert abs(outside) < 0.04, (mat, kind, outside)
            # and the quad is tight: two pixels out it is already mostly mat
            edge_out = float(np.median(ratio[_band(shape, quad, 2.5)]))
            assert edge_out < inside / 2, (mat, kind, edge_out, inside)


def test_forced_factors_are_rendered_and_reported() -> None:
    scene = render_scene2(Spec2(7, Level.HARD, PageKind.ID_CARD, mat=MatKind.LIGHT,
                                shadow=ShadowKind.SOFT, glare=False, overlap=True, rotation=30))
    f = scene.factors
    assert (f.mat, f.shadow, f.glare, f.overlap, f.rotation_deg) == (
        MatKind.LIGHT, ShadowKind.SOFT, False, True, 30.0)
    sides = np.linalg.norm(scene.corners - np.roll(scene.corners, -1, axis=0), axis=1)
    aspect = max(sides[0], sides[1]) / min(sides[0], sides[1])
    assert abs(aspect - 85.6 / 54) < 0.12  # an ID-1 card, under a few degrees of keystone


def test_held_out_half_covers_every_failure_kind() -> None:
    factors = [render_scene2(s).factors for s in scene_set2(48, Split.HELD_OUT)]
    assert {f.mat for f in factors} == set(MatKind)
    assert any(f.shadow is ShadowKind.SOFT and f.shadow_crosses_page for f in factors)
    assert any(f.shadow is ShadowKind.HARD for f in factors)
    assert any(f.glare for f in factors) and any(f.overlap for f in factors)
    assert any(f.text_block for f in factors)
    assert max(abs(f.rotation_deg) for f in factors) > 20
