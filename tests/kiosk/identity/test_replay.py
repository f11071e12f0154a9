"""Replay signs: a face shown on a phone held up to the camera (a pixel grid beating with the
camera's, the phone's bezel around it) is flagged; the test photos themselves are not."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.identity.engine import DlibEngine
from kiosk.identity.replay import ReplaySign, assess_replay
from kiosk.identity.verify import find_faces

from .conftest import load

PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama-480p.jpg", "obama_small.jpg",
          "biden.jpg", "biden2.jpg"]


def on_a_screen(image: np.ndarray) -> np.ndarray:
    """The face replayed on a phone: half size, a fine slanted grid (moiré) over it, a dark
    bezel around it, held in front of a plain wall."""
    h, w = image.shape[:2]
    phone = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:phone.shape[0], 0:phone.shape[1]]
    grid = 0.75 + 0.25 * np.sin(2 * np.pi * (xx * 0.31 + yy * 0.07))
    phone = np.clip(phone * grid[..., None], 0, 255).astype(np.uint8)
    wall = np.full_like(image, 150)
    y0, x0 = h // 4, w // 4
    cv2.rectangle(wall, (x0 - 12, y0 - 12), (x0 + phone.shape[1] + 12,
                                             y0 + phone.shape[0] + 12), (20, 20, 20), -1)
    wall[y0:y0 + phone.shape[0], x0:x0 + phone.shape[1]] = phone
    return wall


@pytest.mark.parametrize("name", PHOTOS)
def test_a_plain_photo_shows_no_replay_sign(faces: Path, engine: DlibEngine, name: str) -> None:
    image = load(faces, name)
    boxes, _ = find_faces(engine, image, 320)
    report = assess_replay(image, boxes[0])
    assert report.signs == [], report


@pytest.mark.parametrize("name", ["obama.jpg", "obama2.jpg", "biden.jpg", "biden2.jpg"])
def test_a_face_replayed_on_a_screen_is_flagged(faces: Path, engine: DlibEngine,
                                               name: str) -> None:
    replay = on_a_screen(load(faces, name))
    boxes, _ = find_faces(engine, replay, 320)
    assert len(boxes) == 1
    report = assess_replay(replay, boxes[0])
    assert ReplaySign.MOIRE in report.signs, report
    assert ReplaySign.BORDER in report.signs or report.border >= 0.5, report
