"""The desk re-checks the face evidence of every package it files (GB/T 38671-2020): the
comparison recomputed from the package's card photo and live stills, the liveness frames
against the challenge. A compromised kiosk (the test kiosk's own key) that signs a record
claiming a match the photos do not support is caught: the clerk's case JSON says so and the
audit chain records it.

Packages are made by the kiosk's real pipeline: dlib on chip-quality card photos, a
SIMULATED person (a test photo acting out the prompts) through a real liveness challenge."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devices.facecam import PromptFollower, SimulatedFace, card_photo_from_portrait
from kiosk.identity.engine import default_engine
from kiosk.identity.liveness import LivenessChallenge, LivenessConfig
from kiosk.identity.record import build_record
from kiosk.identity.verify import Verifier
from kiosk.package import identity_document
from remote_desk.package import Manifest, describe_file, sign
from tests.remote_desk.deskkit import Desk, login, upload

FACES = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "faces"

pytestmark = pytest.mark.skipif(not FACES.is_dir(), reason="../shared/testdata/faces is absent "
                                                           "(test data not available)")


def _load(name: str) -> np.ndarray:
    image = cv2.imread(str(FACES / name))
    assert image is not None
    return image


def kiosk_files(card_owner: str, live_person: str, seed: int = 3) -> dict[str, bytes]:
    """What an honest kiosk puts in a package: identity.json with the verification record,
    the card photo and the evidence stills, from the real pipeline."""
    engine = default_engine()
    card_photo = card_photo_from_portrait(_load(card_owner))
    person = PromptFollower(SimulatedFace(_load(live_person), seed))
    config = LivenessConfig()
    challenge = LivenessChallenge(engine, config, random.Random(seed), simulated=True)
    status, t = challenge.status(), 0.0
    while not status.done and t < 30:
        status = challenge.feed(person.frame(status.step.value if status.step else None, t), t)
        t += 0.1
    liveness = status.result
    assert liveness is not None and liveness.passed, liveness
    verifier = Verifier(engine)
    extra = [(person.frame(None, t + i / 10), t + i / 10) for i in range(3)]
    result = verifier.verify(verifier.prepare_card(card_photo), [*liveness.frontal, *extra],
                             limit=len(liveness.frontal) + 3)
    record = build_record(result, card_photo, engine.versions, liveness, simulated=True,
                          step_timeout=config.step_timeout)
    verification = {"decision": result.decision.value, "liveness": True, **record.to_json()}
    files = {"identity.json": identity_document({"card_type": "resident"}, verification,
                                                agent=False, simulated=True),
             "card_photo.jpg": record.card_photo_jpeg, **record.evidence_jpegs}
    return files


def signed_form(key: Ed25519PrivateKey, case_id: str, files: dict[str, bytes]
                ) -> aiohttp.FormData:
    """A package signed with ``key`` (the test kiosk's: what a compromised kiosk has)."""
    types = {n: "application/json" if n.endswith(".json") else "image/jpeg" for n in files}
    manifest = Manifest(case_id=case_id, kiosk_id="shengze-01", centre="yongjia",
                        matter="yb-ydjz-ba", created_at=datetime.now(UTC), simulated=True,
                        files=[describe_file(n, d, types[n]) for n, d in files.items()])
    form = aiohttp.FormData()
    form.add_field("manifest", manifest.model_dump_json(), content_type="application/json")
    form.add_field("signature", sign(manifest, key))
    for name, data in files.items():
        form.add_field("file", data, filename=name, content_type=types[name])
    return form


def rewrite_verification(files: dict[str, bytes], **changes: Any) -> dict[str, bytes]:
    identity = json.loads(files["identity.json"])
    identity["verification"].update(changes)
    return {**files, "identity.json": json.dumps(identity, ensure_ascii=False).encode()}


async def face_check(desk: Desk, case_id: str, seconds: float = 60) -> dict[str, Any]:
    """The case as the clerk's page reads it, once the desk's re-check is in."""
    session, _ = await login(desk, "clerk-yj")
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            async with session.get(f"{desk.url}/api/cases/{case_id}") as r:
                assert r.status == 200
                case: dict[str, Any] = await r.json()
            if case.get("face_check") is not None:
                return case
            await asyncio.sleep(0.3)
    finally:
        await session.close()
    raise AssertionError(f"no face check on {case_id} within {seconds} s")


@pytest.fixture(scope="module")
def genuine() -> dict[str, bytes]:
    return kiosk_files("obama2.jpg", "obama-480p.jpg")


@pytest.fixture(scope="module")
def impostor() -> dict[str, bytes]:
    return kiosk_files("biden2.jpg", "obama-480p.jpg")


@pytest.mark.timeout(180)
async def test_an_honest_package_is_confirmed(desk: Desk, genuine: dict[str, bytes]) -> None:
    status, _ = await upload(desk, signed_form(desk.kiosk_key, "case-face-ok", genuine))
    assert status == 201
    case = await face_check(desk, "case-face-ok")
    check = case["face_check"]
    assert check["agrees"] is True, json.dumps(check)
    assert check["problems"] == [] and check["replay_signs"] == []
    assert check["desk_decision"] in ("match", "review")
    assert abs(check["desk_distance"] - check["kiosk_distance"]) < 0.08


@pytest.mark.timeout(180)
async def test_a_tampered_match_claim_is_caught_and_audited(
        desk: Desk, impostor: dict[str, bytes]) -> None:
    honest = json.loads(impostor["identity.json"])["verification"]
    assert honest["decision"] == "no_match"  # what the kiosk's own comparison found
    forged = rewrite_verification(impostor, decision="match", distance=0.31,
                                  reasons=["distance 0.310 <= 0.445"])
    status, _ = await upload(desk, signed_form(desk.kiosk_key, "case-face-forged", forged))
    assert status == 201  # the signature is the kiosk's own: intake cannot tell
    case = await face_check(desk, "case-face-forged")
    check = case["face_check"]
    assert check["agrees"] is False
    assert check["kiosk_decision"] == "match" and check["desk_decision"] == "no_match"
    assert check["desk_distance"] > 0.6
    assert any("claims match" in p for p in check["problems"]), check
    session, _ = await login(desk, "auditor")
    try:
        async with session.get(f"{desk.url}/api/audit?limit=50") as r:
            entries = (await r.json())["entries"]
        async with session.get(f"{desk.url}/api/audit/verify") as r:
            chain = await r.json()
    finally:
        await session.close()
    recorded = [e for e in entries if e["action"] == "face_check"
                and e["target"] == "case-face-forged"]
    assert recorded and '"agrees":false' in recorded[0]["detail"]
    assert chain["ok"] is True


@pytest.mark.timeout(180)
async def test_liveness_evidence_out_of_order_or_not_turning_is_flagged(
        desk: Desk, genuine: dict[str, bytes]) -> None:
    record = json.loads(genuine["identity.json"])["verification"]
    steps = record["liveness"]["steps"]
    step_files = [e["file"] for e in record["evidence"] if e["kind"] == "step"]
    start_file = next(e["file"] for e in record["evidence"] if e["kind"] == "start")
    # a replayed recording: the steps reported in another order than the challenge asked,
    # and a frontal frame passed off as the first turn
    forged = rewrite_verification(genuine, liveness={**record["liveness"],
                                                     "steps": steps[::-1]})
    forged[step_files[0]] = genuine[start_file]
    status, _ = await upload(desk, signed_form(desk.kiosk_key, "case-face-replayed", forged))
    assert status == 201
    check = (await face_check(desk, "case-face-replayed"))["face_check"]
    assert check["agrees"] is False
    problems = " ".join(check["problems"])
    assert "not the challenge's steps in its order" in problems
    assert "does not show the turn" in problems, problems
