"""Page detection on scenes of the second SIMULATED generator (tuning half only): the quad
stays on the paper's edge under the failure kinds real kiosks meet, with the empty-mat
reference and without it."""

from __future__ import annotations

import numpy as np
import pytest

from devices.scanner.detect import PageDetector
from devices.scanner.geometry import PageKind, iou
from devices.scanner.scenes2 import Level, MatKind, Scene2, ShadowKind, Spec2, render_scene2


def _scenes(kind: PageKind, *, crossing: bool = False, form: bool = False, count: int = 4,
            **force: object) -> list[Scene2]:
    """The first ``count`` tuning-half scenes (even seeds from 200) that show the situation."""
    found: list[Scene2] = []
    seed = 200
    while len(found) < count:
        scene = render_scene2(Spec2(seed, Level.MEDIUM, kind, glare=False, overlap=False,
                                    **force))  # type: ignore[arg-type]
        seed += 2
        if crossing and not scene.factors.shadow_crosses_page:
            continue
        if form and not scene.factors.text_block:
            continue
        found.append(scene)
    return found


def _assert_found(scenes: list[Scene2], floor: float = 0.97) -> None:
    for scene in scenes:
        for detector in (PageDetector(scene.reference), PageDetector()):
            found = detector.detect(scene.image)
            score = iou(found.corners if found.found else None, scene.corners)
            assert score >= floor, (scene.spec.seed, detector.has_reference, score)


@pytest.mark.parametrize("mat", [MatKind.DARK, MatKind.LIGHT])
def test_soft_shadow_crossing_the_page_is_not_its_edge(mat: MatKind) -> None:
    _assert_found(_scenes(PageKind.A4_LANDSCAPE, crossing=True, mat=mat,
                          shadow=ShadowKind.SOFT))


def test_hard_shadow_crossing_the_page_is_not_its_edge() -> None:
    _assert_found(_scenes(PageKind.A4_PORTRAIT, crossing=True, mat=MatKind.DARK,
                          shadow=ShadowKind.HARD))


def test_id_card_under_a_shadow_is_found_whole() -> None:
    scenes = _scenes(PageKind.ID_CARD, crossing=True, mat=MatKind.DARK, shadow=ShadowKind.SOFT)
    _assert_found(scenes)
    found = PageDetector(scenes[0].reference).detect(scenes[0].image)
    assert found.kind is PageKind.ID_CARD


def test_form_on_a_light_mat_gives_the_sheet_not_its_printed_frame() -> None:
    scenes = _scenes(PageKind.A4_PORTRAIT, form=True, mat=MatKind.LIGHT, shadow=ShadowKind.NONE)
    _assert_found(scenes)
    for scene in scenes:  # the frame lies wholly inside: a quad on it would be much smaller
        found = PageDetector().detect(scene.image)
        assert found.corners is not None and scene.corners is not None
        assert np.linalg.norm(found.corners - scene.corners, axis=1).max() < 6


@pytest.mark.parametrize(("kind", "mat", "degrees"), [
    (PageKind.A4_PORTRAIT, MatKind.STRIPED, 30.0),
    (PageKind.ID_CARD, MatKind.CLUTTERED, -30.0),
])
def test_page_tilted_thirty_degrees(kind: PageKind, mat: MatKind, degrees: float) -> None:
    _assert_found(_scenes(kind, mat=mat, shadow=ShadowKind.NONE, rotation=degrees))


@pytest.mark.xfail(strict=True, reason="open: 3 of these 4 cards are missed (before this work "
                   "too); a pale card on a light mat is only a few per cent brighter than it, "
                   "near the 5 % step; cause not pinned down, a colour (chroma) step may help")
def test_id_card_under_a_shadow_on_a_light_mat_is_found() -> None:
    _assert_found(_scenes(PageKind.ID_CARD, crossing=True, mat=MatKind.LIGHT,
                          shadow=ShadowKind.SOFT))
