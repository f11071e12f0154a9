"""Verification on ../shared/testdata/faces: genuine pairs, impostors, chip-quality card
photos, two faces, no face, quality gates."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.identity.engine import DlibEngine
from kiosk.identity.quality import FaceGate, FaceQualityConfig
from kiosk.identity.record import build_record
from kiosk.identity.verify import CardPhotoError, Decision, Verifier, VerifyConfig

from .conftest import chip_photo, load

GENUINE = [("obama.jpg", "obama2.jpg"), ("obama.jpg", "obama-480p.jpg"),
           ("obama2.jpg", "obama_small.jpg"), ("biden.jpg", "biden2.jpg")]
IMPOSTOR = [("obama.jpg", "biden.jpg"), ("biden.jpg", "obama2.jpg"),
            ("biden2.jpg", "obama-480p.jpg"), ("obama3.jpg", "biden2.jpg")]


@pytest.mark.parametrize(("card", "live"), GENUINE)
def test_genuine_pairs_are_never_refused(faces: Path, verifier: Verifier, card: str,
                                         live: str) -> None:
    result = verifier.verify(verifier.prepare_card(load(faces, card)),
                             [(load(faces, live), 0.0)])
    assert result.decision in (Decision.MATCH, Decision.REVIEW), result.reasons
    assert result.distance is not None and result.distance < verifier.band[1]


def test_clear_genuine_pairs_match(faces: Path, verifier: Verifier) -> None:
    card = verifier.prepare_card(load(faces, "obama.jpg"))
    for live in ("obama-480p.jpg", "obama_small.jpg", "obama2.jpg"):
        assert verifier.verify(card, [(load(faces, live), 0.0)]).decision is Decision.MATCH


@pytest.mark.parametrize(("card", "live"), IMPOSTOR)
def test_impostor_pairs_do_not_match(faces: Path, verifier: Verifier, card: str,
                                     live: str) -> None:
    result = verifier.verify(verifier.prepare_card(load(faces, card)),
                             [(load(faces, live), 0.0)])
    assert result.decision is Decision.NO_MATCH
    assert result.distance is not None and result.distance > 0.6


def test_chip_quality_card_photo_still_matches_its_owner(faces: Path, verifier: Verifier,
                                                         engine: DlibEngine) -> None:
    card_photo = chip_photo(load(faces, "obama.jpg"), engine)
    assert card_photo.shape == (126, 102, 3)
    card = verifier.prepare_card(card_photo)
    assert 40 <= card.face_px <= 80  # below dlib's 80 px window: upsampling made it findable
    result = verifier.verify(card, [(load(faces, "obama-480p.jpg"), 0.0)])
    assert result.decision is Decision.MATCH
    impostor = verifier.verify(card, [(load(faces, "biden2.jpg"), 0.0)])
    assert impostor.decision is Decision.NO_MATCH


def test_two_faces_are_refused(faces: Path, verifier: Verifier) -> None:
    card = verifier.prepare_card(load(faces, "biden.jpg"))
    result = verifier.verify(card, [(load(faces, "two_people.jpg"), 0.0)])
    assert result.decision is Decision.MULTIPLE_FACES
    assert result.distance is None


def test_no_face_is_refused(faces: Path, verifier: Verifier) -> None:
    card = verifier.prepare_card(load(faces, "obama.jpg"))
    blank = np.full((480, 640, 3), 128, np.uint8)
    assert verifier.verify(card, [(blank, 0.0)]).decision is Decision.NO_FACE
    with pytest.raises(CardPhotoError):
        verifier.prepare_card(blank)


def test_best_of_several_frames_counts(faces: Path, verifier: Verifier) -> None:
    card = verifier.prepare_card(load(faces, "obama.jpg"))
    frames = [(np.full((480, 640, 3), 90, np.uint8), 0.0), (load(faces, "obama2.jpg"), 0.2),
              (load(faces, "obama-480p.jpg"), 0.4)]
    result = verifier.verify(card, frames)
    assert result.best_index == 2  # the closer of the two usable frames
    assert result.decision is Decision.MATCH
    assert result.frames[0].distance is None


@pytest.mark.parametrize(("change", "gate"), [
    ("small", FaceGate.TOO_SMALL),
    ("dark", FaceGate.TOO_DARK),
    ("blur", FaceGate.BLURRED),
    ("backlit", FaceGate.BACKLIT),
])
def test_quality_gates(faces: Path, verifier: Verifier, change: str, gate: FaceGate) -> None:
    image = load(faces, "obama-480p.jpg")
    if change == "small":
        image = cv2.resize(image, None, fx=0.55, fy=0.55, interpolation=cv2.INTER_AREA)
    elif change == "dark":
        image = (image * 0.2).astype(np.uint8)
    elif change == "blur":
        image = cv2.GaussianBlur(image, (0, 0), 4)
    else:
        boxes, _ = verifier._find(image)
        box = boxes[0]
        bright = np.full_like(image, 250)
        bright[box.top:box.bottom, box.left:box.right] = (
            image[box.top:box.bottom, box.left:box.right] * 0.45).astype(np.uint8)
        image = bright
    verdict = verifier.examine(image)
    assert gate in verdict.quality.failed, verdict.quality
    assert verdict.quality.message("zh")


def test_turned_face_is_not_frontal(faces: Path, engine: DlibEngine) -> None:
    # obama2.jpg looks past the camera (nose about 0.2 eye distances off centre)
    strict = Verifier(engine, VerifyConfig(quality=FaceQualityConfig(max_yaw=0.15)))
    verdict = strict.examine(load(faces, "obama2.jpg"))
    assert verdict.quality.failed == [FaceGate.NOT_FRONTAL]
    assert verdict.quality.yaw is not None and abs(verdict.quality.yaw) > 0.15
    assert strict.examine(load(faces, "obama-480p.jpg")).quality.ok


def test_partial_face_is_not_compared_blindly(faces: Path, verifier: Verifier) -> None:
    card = verifier.prepare_card(load(faces, "obama.jpg"))
    result = verifier.verify(card, [(load(faces, "obama_partial_face.jpg"), 0.0)])
    # a face cut by the frame edge is either refused by a gate or still recognised: never a
    # confident match with someone else
    assert result.decision in (Decision.MATCH, Decision.REVIEW, Decision.POOR_QUALITY)


def test_record_carries_what_the_case_needs(faces: Path, verifier: Verifier,
                                            engine: DlibEngine) -> None:
    card_photo = chip_photo(load(faces, "obama.jpg"), engine)
    result = verifier.verify(verifier.prepare_card(card_photo),
                             [(load(faces, "obama2.jpg"), 0.0)])
    record = build_record(result, card_photo, engine.versions, None)
    data = record.to_json()
    assert data["engine"]["landmarks"] == "shape_predictor_5_face_landmarks"
    assert data["engine"]["face_recognition"] != "unknown"
    assert data["threshold"] == 0.47 and data["decision"] == result.decision.value
    assert "card_photo_jpeg" not in data and record.card_photo_jpeg[:2] == b"\xff\xd8"
    assert record.best_live_still_jpeg[:2] == b"\xff\xd8"
    assert "jpeg" not in repr(record)
    overridden = record.overridden("clerk-7", Decision.MATCH, "同一人，照片年代久远")
    assert overridden.final_decision is Decision.MATCH and record.clerk_override is None
