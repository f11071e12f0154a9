"""The desk's own look at a case's face evidence (GB/T 38671-2020: the relying party does not
take the terminal's word): the comparison recomputed from the package's card photo and live
stills, the liveness evidence frames checked against the challenge (order, timing, the turn
each frame shows, the same person throughout), and replay signs. A disagreement with the
kiosk's record is shown to the clerk (``face_check`` in ``GET /api/cases/{id}``) and every
check is recorded in the audit chain (action ``face_check``, no personal data).

A kiosk whose key is stolen can still sign a record claiming a match; what it cannot do is
make the photos it sends support that claim. The engine is the kiosk's (``kiosk.identity``,
dlib), run here on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from remote_desk.db import append_audit
from remote_desk.models import AuditEntry

log = structlog.get_logger("remote_desk.facecheck")

ACTOR = "desk:facecheck"
ACTION = "face_check"
ORDER = {"match": 0, "review": 1, "no_match": 2}
TIME_SLACK = 0.05
"""Seconds of rounding allowed between a record's times and its evidence frames'."""
DISTANCE_SLACK = 0.08
"""Re-encoding a JPEG still moves a distance a little; a claim further off than this is not
the kiosk's arithmetic but another result."""
TURNED_FACE_LIMIT = 0.68
"""A turned face encodes further from the frontal one than the frontal threshold allows
(measured on the test faces: the same person turned up to 0.64, another person 0.71 and
more); beyond this a step's frame is taken to show someone else."""


@dataclass
class FaceCheck:
    """What the desk found; ``agrees`` is False when the clerk must be told."""

    kiosk_decision: str | None
    kiosk_distance: float | None
    desk_decision: str
    desk_distance: float | None
    agrees: bool
    problems: list[str] = field(default_factory=list)
    replay_signs: list[str] = field(default_factory=list)
    to_clerk: bool = False
    """The kiosk ran out of face checks and sent the case on for the clerk to verify."""

    def to_json(self) -> dict[str, Any]:
        return {"kiosk_decision": self.kiosk_decision,
                "kiosk_distance": self.kiosk_distance,
                "desk_decision": self.desk_decision,
                "desk_distance": None if self.desk_distance is None
                else round(self.desk_distance, 4),
                "agrees": self.agrees, "problems": self.problems,
                "replay_signs": self.replay_signs, "to_clerk": self.to_clerk}


def _image(files: Mapping[str, bytes], name: str) -> np.ndarray | None:
    data = files.get(name)
    if not data:
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return image if image is not None and image.size else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def recheck(files: Mapping[str, bytes], engine: Any = None) -> FaceCheck:
    """Blocking (dlib): the whole re-check of one package's files."""
    from kiosk.identity.engine import default_engine
    from kiosk.identity.verify import CardPhotoError, Verifier

    try:
        identity = json.loads(files.get("identity.json", b"{}") or b"{}")
    except ValueError:
        identity = {}
    record = identity.get("verification") if isinstance(identity, dict) else None
    if not isinstance(record, dict) or not record:
        return FaceCheck(None, None, "unchecked", None, False,
                         ["the package carries no face verification record"])
    claimed = str(record.get("decision")) if record.get("decision") else None
    claimed_distance = _number(record.get("distance"))
    to_clerk = record.get("to_clerk") is True
    problems: list[str] = []
    engine = engine or default_engine()
    verifier = Verifier(engine)  # the desk's own thresholds, never the record's
    evidence = [e for e in record.get("evidence") or [] if isinstance(e, dict)]
    missing = [str(e.get("file")) for e in evidence if str(e.get("file")) not in files]
    if missing:
        problems.append(f"{len(missing)} evidence still(s) named in the record are not in "
                        "the package")
    live_names = [str(e["file"]) for e in evidence if e.get("kind") == "live"] or \
        ["live_still.jpg"]
    stills = [(image, 0.0) for n in live_names if (image := _image(files, n)) is not None]
    card_photo = _image(files, "card_photo.jpg")
    desk_decision, desk_distance, fused = "unchecked", None, None
    if card_photo is None or not stills:
        problems.append("no card photo or no live still to compare")
    else:
        try:
            card = verifier.prepare_card(card_photo)
            result = verifier.verify(card, stills, limit=len(stills))
            desk_decision, desk_distance = result.decision.value, result.distance
            chosen = [result.frames[i].encoding for i in result.fused]
            fused = np.mean([c for c in chosen if c is not None], axis=0) if chosen else None
        except CardPhotoError:
            desk_decision = "no_face"
            problems.append("no face in the card photo")
    agrees = _agree(claimed, claimed_distance, desk_decision, desk_distance, problems)
    problems += _liveness_problems(record, files, evidence, engine, fused)
    signs = _replay(engine, [s for s, _ in stills])
    if signs:
        problems.append("the live stills look like a screen or a print: " + ", ".join(signs))
    return FaceCheck(claimed, claimed_distance, desk_decision, desk_distance,
                     agrees and not problems, problems, signs, to_clerk)


def _agree(claimed: str | None, claimed_distance: float | None, desk: str,
           desk_distance: float | None, problems: list[str]) -> bool:
    """Whether the kiosk's claim stands. A claim more favourable than the desk's result by a
    whole band (match where the desk finds no match), or a distance the photos do not give,
    does not; match against review is the JPEG's noise at a border and stands."""
    if claimed not in ORDER or desk not in ORDER:
        if claimed in ORDER and desk not in ORDER:
            problems.append(f"the kiosk claims {claimed}; the desk finds {desk}")
            return False
        return claimed == desk
    if ORDER[desk] - ORDER[claimed] >= 2 or (ORDER[desk] > ORDER[claimed] and claimed_distance
                                             is not None and desk_distance is not None and
                                             desk_distance - claimed_distance > DISTANCE_SLACK):
        problems.append(f"the kiosk claims {claimed}; the desk's comparison of the same "
                        f"photos finds {desk}")
        return False
    if claimed_distance is not None and desk_distance is not None and \
            abs(claimed_distance - desk_distance) > DISTANCE_SLACK:
        problems.append("the kiosk's distance is not what its photos give")
        return False
    return True


def _liveness_problems(record: dict[str, Any], files: Mapping[str, bytes],
                       evidence: list[dict[str, Any]], engine: Any,
                       fused: np.ndarray | None) -> list[str]:
    """The liveness record against its own challenge and its evidence frames."""
    from kiosk.identity.quality import yaw_of
    from kiosk.identity.verify import find_faces

    live = record.get("liveness")
    if not isinstance(live, dict) or not live.get("passed"):
        return []  # nothing claimed; the decision already says so
    out: list[str] = []
    steps = [s for s in live.get("steps") or [] if isinstance(s, dict)]
    sequence = [str(s) for s in live.get("sequence") or []]
    if not sequence or [str(s.get("step")) for s in steps] != sequence:
        out.append("the liveness steps are not the challenge's steps in its order")
    timeout = _number(live.get("step_timeout"))
    last_end = None
    for n, step in enumerate(steps, 1):
        start, end = _number(step.get("started_at")), _number(step.get("ended_at"))
        if not step.get("passed") or start is None or end is None or end < start:
            out.append(f"liveness step {n} has no valid times")
            continue
        if timeout is not None and end - start > timeout + TIME_SLACK:
            out.append(f"liveness step {n} took longer than the challenge allows")
        if last_end is not None and start < last_end - TIME_SLACK:
            out.append(f"liveness step {n} began before the step before it ended")
        last_end = end
    step_frames = [e for e in evidence if e.get("kind") == "step"]
    start_frame = next((e for e in evidence if e.get("kind") == "start"), None)
    if len(step_frames) != len(steps):
        out.append("not every liveness step has its evidence frame")
        return out
    times = [_number(e.get("t")) for e in step_frames]
    for n, (frame, step, t) in enumerate(zip(step_frames, steps, times, strict=True), 1):
        end = _number(step.get("ended_at"))
        if frame.get("step") != step.get("step") or t is None or end is None or \
                abs(t - end) > TIME_SLACK:
            out.append(f"the evidence frame of liveness step {n} is not from that step")
    if any(t is None for t in times) or times != sorted(t for t in times if t is not None):
        out.append("the liveness evidence frames are out of order")
    start_t = _number(start_frame.get("t")) if start_frame else None
    if start_frame is None or start_t is None or (times and times[0] is not None
                                                  and start_t > times[0]):
        out.append("the liveness challenge's first frame is missing or late")
        return out
    # what the frames show: the turn each step asked for, by the same person
    base = _pose(engine, files, str(start_frame.get("file")), find_faces, yaw_of)
    if base is None:
        out.append("no single face in the challenge's first frame")
        return out
    mirrored = live.get("mirrored") is True
    for n, (frame, step) in enumerate(zip(step_frames, steps, strict=True), 1):
        pose = _pose(engine, files, str(frame.get("file")), find_faces, yaw_of)
        if pose is None:
            out.append(f"no single face in the evidence frame of liveness step {n}")
            continue
        yaw, encoding = pose
        name = str(step.get("step"))
        if name in ("turn_left", "turn_right"):
            direction = 1.0 if name == "turn_left" else -1.0
            if mirrored:
                direction = -direction
            if (yaw - base[0]) * direction < 0.05:
                out.append(f"the evidence frame of liveness step {n} does not show the "
                           f"{name.replace('_', ' ')} asked for")
        if fused is not None and engine.distance(encoding, fused) > TURNED_FACE_LIMIT:
            out.append(f"the evidence frame of liveness step {n} shows another person")
    return out


def _pose(engine: Any, files: Mapping[str, bytes], name: str, find_faces: Any,
          yaw_of: Any) -> tuple[float, np.ndarray] | None:
    image = _image(files, name)
    if image is None:
        return None
    boxes, rgb = find_faces(engine, image, 320)
    if len(boxes) != 1:
        return None
    marks = engine.landmarks(rgb, boxes)[0]
    return float(yaw_of(marks)), engine.encode(rgb, boxes)[0]


def _replay(engine: Any, stills: list[np.ndarray]) -> list[str]:
    from kiosk.identity.replay import assess_replay
    from kiosk.identity.verify import find_faces

    signs: set[str] = set()
    for still in stills:
        boxes, _ = find_faces(engine, still, 320)
        if len(boxes) == 1:
            signs.update(s.value for s in assess_replay(still, boxes[0]).signs)
    return sorted(signs)


class FaceChecker:
    """Runs the re-check of each filed package off the event loop and records it."""

    def __init__(self, db: async_sessionmaker[AsyncSession], engine: Any = None) -> None:
        self.db = db
        self.engine = engine
        self._tasks: set[asyncio.Task[FaceCheck]] = set()

    def schedule(self, case_id: str, files: Mapping[str, bytes]) -> None:
        """Start the re-check of a package just filed (the kiosk's upload is not held up)."""
        if "identity.json" not in files:
            return
        task = asyncio.ensure_future(self.run(case_id, dict(files)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, case_id: str, files: Mapping[str, bytes]) -> FaceCheck:
        try:
            check = await asyncio.to_thread(recheck, files, self.engine)
        except Exception as exc:  # a broken still must not lose the record of trying
            log.error("desk.face_check_failed", case=case_id, error=type(exc).__name__)
            check = FaceCheck(None, None, "error", None, False,
                              ["the desk could not re-check the face evidence"])
        detail = json.dumps(check.to_json(), ensure_ascii=False, sort_keys=True,
                            separators=(",", ":"))
        async with self.db() as db:
            await append_audit(db, ACTOR, ACTION, case_id, detail=detail)
            await db.commit()
        log.info("desk.face_checked", case=case_id, agrees=check.agrees,
                 desk=check.desk_decision, problems=len(check.problems))
        return check

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):  # cancelled at shutdown
                await task


async def latest(db: AsyncSession, case_id: str) -> dict[str, Any] | None:
    """The newest face check of a case, as the clerk's page reads it (None: not done yet)."""
    entry = (await db.execute(
        select(AuditEntry).where(AuditEntry.action == ACTION, AuditEntry.target == case_id,
                                 AuditEntry.actor == ACTOR)
        .order_by(AuditEntry.id.desc()).limit(1))).scalar_one_or_none()
    if entry is None:
        return None
    try:
        data: dict[str, Any] = json.loads(entry.detail)
    except ValueError:
        return None
    return data
