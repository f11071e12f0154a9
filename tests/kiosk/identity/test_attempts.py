"""GB/T 38671-2020 at the kiosk: each liveness challenge answers once, face checks are limited
per session (then the case goes to the clerk marked as failed, with every attempt's still), and
the touch screen hears pass, fail or "to the clerk", never a score.

The session rules are pinned on the pure state machine; the whole path runs once through the
real kiosk service: the virtual ID card reader on a pty, the SIMULATED face camera acting out
the prompts, dlib on its thread, the touch screen's HTTP API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk import events as ev
from kiosk.catalogue import load_catalogue
from kiosk.session import Action, Session, State, TransitionError

from .conftest import load

SCORE_KEYS = {"distance", "score", "threshold", "review_band", "frame_distances", "similarity"}


def _at_face_check(attempts: int = 3) -> Session:
    s = Session(load_catalogue(), face_attempts=attempts)
    for event in (ev.Touch(), ev.ChooseCentre(centre="yongjia"),
                  ev.ChooseMatter(matter="yb-ydjz-ba"), ev.CardRead(card={"name": "x"})):
        s.handle(event, 1)
    assert s.state is State.VERIFY_FACE
    return s


def _fail(s: Session, n: int) -> list[Action]:
    return s.handle(ev.FaceResult(decision="no_match", liveness=True, challenge_id=f"c{n}",
                                  record={"distance": 0.8}), 2 + n)


def test_the_third_failed_check_goes_to_the_clerk_marked_failed() -> None:
    s = _at_face_check()
    for n in (1, 2):
        assert _fail(s, n) == []
        assert s.state is State.VERIFY_FACE and s.screen()["face"] == "fail"
        assert s.screen()["face_attempts_left"] == 3 - n
        assert s.handle(ev.Retake(), 5 + n) == [Action.START_FACE_CHECK]
    assert _fail(s, 3) == [Action.START_CAPTURE]  # not retried silently: on to the clerk
    assert s.state is State.CAPTURE and s.screen()["face"] == "clerk"
    verification = s.context.verification
    assert verification is not None and verification["to_clerk"] is True
    assert verification["flag"] == "face check failed 3 times"
    assert verification["failed_attempts"] == 3
    with pytest.raises(TransitionError):  # no fourth attempt by going back
        s.handle(ev.Back(), 10)


def test_the_limit_is_configurable() -> None:
    s = _at_face_check(attempts=1)
    assert _fail(s, 1) == [Action.START_CAPTURE]
    assert s.context.verification is not None
    assert s.context.verification["flag"] == "face check failed 1 times"


def test_a_challenge_answers_once() -> None:
    s = _at_face_check()
    _fail(s, 1)
    s.handle(ev.Retake(), 4)
    with pytest.raises(TransitionError, match="answered already"):
        s.handle(ev.FaceResult(decision="match", liveness=True, challenge_id="c1"), 5)
    assert s.state is State.VERIFY_FACE
    s.handle(ev.FaceResult(decision="match", liveness=True, challenge_id="c9"), 6)
    assert s.state is State.CAPTURE and s.screen()["face"] == "pass"


def test_review_tells_the_citizen_the_clerk_will_look_not_the_score() -> None:
    s = _at_face_check()
    s.handle(ev.FaceResult(decision="review", liveness=True, challenge_id="c1",
                           record={"distance": 0.49, "threshold": 0.47}), 3)
    screen = s.screen()
    assert screen["face"] == "clerk"
    assert not SCORE_KEYS & set(screen)


# -- the real kiosk service -------------------------------------------------------------------


def _no_score(screen: dict[str, Any]) -> None:
    """Nothing on the screen is a score: no score key, no fraction anywhere in it."""
    def walk(value: Any) -> None:
        if isinstance(value, dict):
            assert not SCORE_KEYS & set(value), value
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        else:
            assert not isinstance(value, float), screen
            assert not (isinstance(value, str) and "0." in value), screen
    walk(screen)


@pytest.fixture
async def kiosk(faces: Path, tmp_path: Path, request: pytest.FixtureRequest
                ) -> AsyncIterator[tuple[Any, str, Any, Any]]:
    from devices.camera import CameraConfig
    from devices.facecam import FaceCamera, astronaut, card_photo_from_portrait
    from devices.idcard.cards import load_card
    from devices.idcard.photo import PhotoDecoderConfig
    from devices.idcard.reader import IdCardReader, ReaderConfig
    from devices.idcard.simulator import VirtualReader
    from devices.scanner.camera import DocumentCamera
    from kiosk.config import KioskConfig, KioskSection
    from kiosk.identity.config import FaceConfig
    from kiosk.service import Devices, KioskService

    # someone else: a test face that fits the simulated chip's 1024-byte photo block
    portrait = astronaut() if request.param == "holder" else load(faces, "biden2.jpg")
    photo = tmp_path / "chip.png"
    cv2.imwrite(str(photo), card_photo_from_portrait(portrait))
    card = load_card("resident").model_copy(update={"photo": str(photo)})
    with VirtualReader(reread="stays") as sim:
        reader = IdCardReader(ReaderConfig(port=sim.path, poll_interval=0.3,
                                           photo_decoder=PhotoDecoderConfig(kind="simulated")))
        face_cam = CameraConfig(source="sim", preview_size=(640, 480),
                                capture_size=(640, 480), fps=15)
        doc_cam = CameraConfig(source="sim:7", preview_size=(960, 720),
                               capture_size=(960, 720), fps=5)
        config = KioskConfig(
            kiosk=KioskSection(kiosk_id="kiosk-face", spool_dir=tmp_path / "spool",
                               work_dir=tmp_path / "work", screen_port=0, simulated=True),
            face=FaceConfig(camera=face_cam))
        service = KioskService(config, load_catalogue(), Ed25519PrivateKey.generate(),
                               Devices(reader, FaceCamera(face_cam), DocumentCamera(doc_cam)))
        await service.start()
        try:
            yield service, str(service.screen_url).rstrip("/"), sim, card
        finally:
            await service.stop()


async def _screen(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(base + "/api/screen") as r:
        data: dict[str, Any] = await r.json()
        return data


async def _press(http: aiohttp.ClientSession, base: str, event: str, **data: Any) -> None:
    async with http.post(base + "/api/event", json={"event": event, "data": data}) as r:
        assert r.status == 200, await r.text()


async def _to_face_check(http: aiohttp.ClientSession, base: str, sim: Any, card: Any) -> None:
    await _press(http, base, "touch")
    await _press(http, base, "choose_centre", centre="yongjia")
    await _press(http, base, "choose_matter", matter="yb-ydjz-ba")
    sim.insert(card)


async def _watch(http: aiohttp.ClientSession, base: str, seen: list[dict[str, Any]],
                 until: Any, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        screen = await _screen(http, base)
        seen.append(screen)
        if until(screen):
            return screen
        await asyncio.sleep(0.2)
    raise AssertionError(f"screen did not get there in {seconds} s: {seen[-1]}")


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize("kiosk", ["someone_else"], indirect=True)
async def test_three_failed_checks_go_to_the_clerk_with_every_still(
        kiosk: tuple[Any, str, Any, Any]) -> None:
    service, base, sim, card = kiosk
    seen: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        await _to_face_check(http, base, sim, card)
        for attempt in (1, 2):
            screen = await _watch(http, base, seen, lambda s: s.get("face") == "fail", 40)
            assert screen["face_attempts_left"] == 3 - attempt
            await _press(http, base, "retake")
        screen = await _watch(http, base, seen, lambda s: s["state"] == "capture", 40)
        assert screen["face"] == "clerk"
    verification = service.session.context.verification
    assert verification["to_clerk"] is True
    assert verification["flag"] == "face check failed 3 times"
    assert verification["decision"] == "no_match" and verification["distance"] > 0.6
    names = {f.name for f in service._files}
    assert {"card_photo.jpg", "live_still.jpg", "face_attempt_1.jpg",
            "face_attempt_2.jpg"} <= names
    assert any(n.startswith("liveness_1_") for n in names)
    for screen in seen:
        _no_score(screen)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kiosk", ["holder"], indirect=True)
async def test_the_holder_passes_and_the_screen_shows_no_score(
        kiosk: tuple[Any, str, Any, Any]) -> None:
    service, base, sim, card = kiosk
    seen: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        await _to_face_check(http, base, sim, card)
        screen = await _watch(http, base, seen, lambda s: s["state"] == "capture", 60)
    assert screen["face"] in ("pass", "clerk")
    verification = service.session.context.verification
    assert verification["distance"] is not None  # the score exists: it goes to the desk
    assert verification["liveness"]["challenge_id"]
    for screen in seen:
        _no_score(screen)
