"""Correction, upright, output modes, and the material's JPEG pages and PDF."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from devices.scanner.detect import PageDetector
from devices.scanner.enhance import OutputMode, render_mode, text_skew_degrees, upright, warp
from devices.scanner.geometry import PageKind
from devices.scanner.material import Material, encode_jpeg
from devices.scanner.pipeline import finish_page
from devices.scanner.synthetic import Difficulty, SceneSpec, render_scene


@pytest.mark.parametrize("seed", [31, 32, 33, 34, 35, 36])
def test_corrected_text_lines_are_horizontal_within_a_degree(seed: int) -> None:
    scene = render_scene(SceneSpec(seed, Difficulty.MEDIUM, size=(1920, 1440)))
    found = PageDetector(scene.reference).detect(scene.image)
    assert found.corners is not None
    page, _ = upright(warp(scene.image, found.corners, found.kind), found.kind)
    assert abs(text_skew_degrees(page)) <= 1.0


@pytest.mark.parametrize("turn", [None, cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180,
                                  cv2.ROTATE_90_COUNTERCLOCKWISE])
def test_upright_restores_a_turned_page(turn: int | None) -> None:
    flat = render_scene(SceneSpec(41, Difficulty.EASY)).page
    assert flat is not None
    turned = flat if turn is None else cv2.rotate(flat, turn)
    fixed, _ = upright(turned, PageKind.A4_PORTRAIT)
    assert fixed.shape == flat.shape
    assert float(np.abs(fixed.astype(int) - flat.astype(int)).mean()) < 1.0


def test_output_modes() -> None:
    scene = render_scene(SceneSpec(42, Difficulty.MEDIUM))
    found = PageDetector(scene.reference).detect(scene.image)
    assert found.corners is not None
    page = warp(scene.image, found.corners, found.kind)
    doc = render_mode(page, OutputMode.DOCUMENT)
    grey = render_mode(page, OutputMode.GREY)
    bw = render_mode(page, OutputMode.BLACK_WHITE)
    assert doc.shape == page.shape and grey.ndim == 2 and bw.ndim == 2
    assert set(np.unique(bw)) <= {0, 255}
    # paper comes out white in document mode although it was shaded in the scene
    assert np.percentile(cv2.cvtColor(doc, cv2.COLOR_BGR2GRAY), 60) >= 245
    assert np.percentile(cv2.cvtColor(page, cv2.COLOR_BGR2GRAY), 60) < 245
    # and the red seal keeps its colour
    hsv = cv2.cvtColor(doc, cv2.COLOR_BGR2HSV)
    assert (((hsv[..., 0] < 10) | (hsv[..., 0] > 170)) & (hsv[..., 1] > 100)).mean() > 0.002


def test_full_resolution_capture_keeps_the_page_aspect() -> None:
    spec = SceneSpec(43, Difficulty.EASY)
    preview = render_scene(spec)
    still = render_scene(SceneSpec(43, Difficulty.EASY, size=(2880, 2160))).image
    found = PageDetector(preview.reference).detect(preview.image)
    assert found.corners is not None
    out, kind, rotation, corners, _ = finish_page(still, found.corners, preview.image.shape[:2],
                                                  OutputMode.DOCUMENT)
    assert kind is PageKind.A4_PORTRAIT and rotation == 0
    assert out.shape[0] / out.shape[1] == pytest.approx(297 / 210, rel=0.01)
    truth = render_scene(SceneSpec(43, Difficulty.EASY, size=(2880, 2160))).corners
    assert truth is not None
    assert np.linalg.norm(corners - truth, axis=1).max() < 4  # pixels at 2880 x 2160


def test_material_pdf_embeds_the_jpegs_unchanged() -> None:
    material = Material("委托书")
    a = np.full((600, 424, 3), 250, np.uint8)
    cv2.putText(a, "page one", (40, 100), cv2.FONT_HERSHEY_SIMPLEX, 1, (0, 0, 0), 2)
    material.add(a, PageKind.A4_PORTRAIT)
    material.add(cv2.flip(a, 0), PageKind.A4_PORTRAIT)
    pdf = material.to_pdf()
    assert pdf.startswith(b"%PDF")
    for page in material.pages:
        assert page.jpeg in pdf  # img2pdf embeds the JPEG stream as it is
    assert pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") >= 2 or \
        pdf.count(b"/Page") >= 2


def test_card_front_and_back_become_one_page() -> None:
    material = Material("身份证")
    front = np.full((540, 856, 3), (200, 220, 240), np.uint8)
    back = np.full((540, 856, 3), (240, 220, 200), np.uint8)
    assert material.add(front, PageKind.ID_CARD) is None
    assert material.waiting_for_card_back
    page = material.add(back, PageKind.ID_CARD)
    assert page is not None and page.kind is PageKind.A4_PORTRAIT
    assert page.height / page.width == pytest.approx(297 / 210, rel=0.01)
    assert len(material.pages) == 1 and not material.waiting_for_card_back


def test_jpeg_quality_is_configurable() -> None:
    image = render_scene(SceneSpec(44, Difficulty.EASY)).image
    assert len(encode_jpeg(image, 40)) < len(encode_jpeg(image, 95))
    with pytest.raises(ValueError):
        Material("x").to_pdf()
