"""The case service: carries out the transition table (``remote_desk.transitions``) in the
store: a clerk's decision with its case number and receipt, papers a kiosk sends, a transfer
to another centre.

Every transition is one UPDATE that matches the state and version the case was read at, so of
concurrent requests on one case exactly one wins and the others get ``CaseConflict`` saying
what the winner did. Case numbers come from a counter row per centre and day, taken in the
same transaction, so they are unique and consecutive (a lost race gives its number back).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from remote_desk.blobs import BlobStore
from remote_desk.db import append_audit
from remote_desk.facecheck import FaceChecker
from remote_desk.models import Case, CaseCounter, CaseFile, PendingTransfer, User
from remote_desk.package import Manifest, ManifestFile
from remote_desk.transitions import (
    NUMBERED,
    CaseEvent,
    CaseState,
    DecisionKind,
    Event,
    TransitionRefused,
    case_number,
    next_state,
)
from remote_desk.workdays import add_working_days

log = structlog.get_logger("remote_desk.cases")

PACKAGE_ATTEMPTS = 3
"""A kiosk's package that loses a race with another change of its case is filed again this
many times (re-read, re-checked) before it is refused."""


class CaseNotFound(Exception):
    """No such case, or none the asker may see."""


class CaseConflict(Exception):
    """The case's state does not allow this, or another request changed it first. The message
    is one sentence for the clerk or the kiosk's log; ``code`` is the API's error code."""

    def __init__(self, message: str, code: str = "conflict") -> None:
        super().__init__(message)
        self.code = code


class _Lost(Exception):
    """Another transaction changed the case after it was read (internal: retried or told)."""


class Decision(BaseModel):
    """A clerk's decision on a case."""

    model_config = ConfigDict(extra="forbid")

    kind: DecisionKind
    """受理, 容缺受理, 补正, 不予受理, 办结."""
    reason: str = Field("", max_length=1000)
    missing: list[str] = Field(default_factory=list, max_length=50)
    commitment: str = Field("", max_length=1000)
    working_days: int = Field(10, ge=1, le=60)

    @model_validator(mode="after")
    def _required(self) -> Decision:
        if self.kind is DecisionKind.REFUSE and not self.reason.strip():
            raise ValueError("a refusal needs its reason")
        if self.kind is DecisionKind.ACCEPT_PENDING and (
                not self.missing or not self.commitment.strip()):
            raise ValueError("容缺受理 needs the missing materials and the citizen's commitment")
        if self.kind is DecisionKind.CORRECTIONS and not self.reason.strip():
            raise ValueError("a request for corrections needs what to correct")
        return self


class Filed(StrEnum):
    """What became of a package a kiosk sent (the intake's ``status``)."""

    STORED = "stored"
    """A new case, or pages added to one (which may return it from 补正 to received)."""
    ALREADY = "already"
    """A retry of something already filed: nothing changed."""
    TRANSFERRED = "transferred"
    """The case moved to the centre a clerk transferred the citizen to."""


def receipt_text(record: Mapping[str, Any], *, number: str | None, matter: str,
                 centre: str) -> str:
    """The receipt the kiosk prints and shows as a QR code."""
    lines = [f"跨域通办 受理回执  {record['kind_zh']}",
             f"受理编号：{number or '—'}", f"事项：{matter}", f"受理中心：{centre}",
             f"时间：{record.get('at_local', record['at'])[:19].replace('T', ' ')}"]
    if record.get("deadline"):
        lines.append(f"请于 {record['deadline']} 前补交：{'、'.join(record['missing'])}")
    if record.get("reason"):
        lines.append(f"说明：{record['reason']}")
    return "\n".join(lines)


def _decided_by(case: Case) -> str | None:
    by = (case.decision or {}).get("by")
    return str(by) if by else None


class CaseService:
    """Decisions, papers and transfers of the cases in one desk's store."""

    def __init__(self, db: async_sessionmaker[AsyncSession], blobs: BlobStore,
                 timezone: str, centres: Collection[str] = ()) -> None:
        self.db = db
        self.blobs = blobs
        self.centres = frozenset(centres)
        """The centres this desk serves: a case transferred elsewhere leaves it."""
        self.zone = ZoneInfo(timezone)
        """The centres' zone: case numbers count its days, deadlines its working days."""
        self.face_checker = FaceChecker(db)
        """Re-checks each filed package's face evidence (``remote_desk.facecheck``)."""

    # -- clerks ---------------------------------------------------------------------------------

    async def decide(self, case_id: str, decision: Decision, *, clerk: str,
                     centres: Collection[str]) -> Case:
        """Record ``clerk``'s decision on a case of one of ``centres``; returns the case.

        Raises ``CaseNotFound``, or ``CaseConflict`` when the case's state does not allow the
        decision (it was decided, or 办结 before 受理) or another clerk decided it first.
        """
        async with self.db() as db:
            case = await db.get(Case, case_id)
            if case is None or case.centre not in centres:
                raise CaseNotFound(case_id)
            self._check(case, decision.kind)
            now = datetime.now(UTC)
            local = now.astimezone(self.zone)  # the centre's own day
            number = case.case_number
            if number is None and decision.kind in NUMBERED:
                number = await self._next_number(db, case.centre, local.date())
            record: dict[str, Any] = {
                "kind": decision.kind.value, "kind_zh": decision.kind.zh, "by": clerk,
                "at": now.isoformat(), "at_local": local.isoformat(), "reason": decision.reason}
            if decision.kind is DecisionKind.ACCEPT_PENDING:
                record.update(missing=decision.missing, commitment=decision.commitment,
                              working_days=decision.working_days,
                              deadline=add_working_days(local.date(),
                                                        decision.working_days).isoformat())
            record["receipt"] = receipt_text(record, number=number, matter=case.matter,
                                             centre=case.centre)
            try:
                case = await self._move(db, case, decision.kind, case_number=number,
                                        decision=record, decided_at=now,
                                        assigned_to=case.assigned_to or clerk)
            except _Lost:
                raise await self._conflict_after_race(db, case_id, decision.kind) from None
            except IntegrityError:  # the unique case number, last guard behind the counter
                log.error("desk.case_number_taken", case=case_id, number=number)
                raise CaseConflict(f"case number {number} is already taken: this centre's "
                                   "counter is behind its cases; tell the administrator") \
                    from None
            await append_audit(db, clerk, "decide", case.id, detail=decision.kind.value)
            await db.commit()
        log.info("desk.case_decided", case=case_id, kind=decision.kind.value)
        return case

    async def mark_transferred(self, case_id: str, to_centre: str, by: str) -> bool:
        """A clerk (``by``, a desk user of the case's centre) transferred the citizen of an
        undecided case to ``to_centre``. To a centre this desk serves, the case is marked to
        follow (``receive`` re-files it when the kiosk sends it there); to another desk's
        centre it becomes ``transferred`` here and is decided there. A case whose papers have
        not arrived yet is marked when they do. Returns whether a mark was made; a case that
        is decided, or not of the clerk's centres, is left as it is."""
        async with self.db() as db:
            case = await db.get(Case, case_id)
            user = await _user(db, by)
            reason: str | None = None
            if user is None or user.disabled:
                reason = "not by a clerk of this desk"
            elif case is None:
                await db.merge(PendingTransfer(case_id=case_id, to_centre=to_centre, by=by,
                                               at=datetime.now(UTC)))
            elif case.centre not in user.centres:
                reason = "not by a clerk of the case's centre"
            elif to_centre == case.centre:
                reason = "the case is at that centre already"
            else:
                event = self._transfer(to_centre)
                try:
                    self._check(case, event)
                    await self._move(db, case, event, transfer_to=to_centre)
                except (CaseConflict, _Lost):
                    reason = "the case is decided"
            if reason is not None:
                log.info("desk.transfer_not_marked", case=case_id, reason=reason)
                return False
            await append_audit(db, by, CaseEvent.TRANSFER.value, case_id, detail=to_centre
                               if case is not None else f"{to_centre} (papers not here yet)")
            await db.commit()
        log.info("desk.case_transfer_marked", case=case_id, to_centre=to_centre,
                 pending=case is None)
        return True

    def _transfer(self, to_centre: str) -> CaseEvent:
        """A transfer to a centre this desk serves marks the case to follow; to another
        desk's centre, the case leaves."""
        return CaseEvent.TRANSFER if to_centre in self.centres else CaseEvent.TRANSFER_OUT

    async def cancel_transfer(self, case_id: str, to_centre: str, by: str) -> bool:
        """The hub refused the transfer ``mark_transferred`` recorded: the case stays where it
        is (audit ``transfer_refused``). Returns whether a mark was taken back."""
        async with self.db() as db:
            case = await db.get(Case, case_id)
            if case is None:
                pending = await db.get(PendingTransfer, case_id)
                if pending is None or pending.to_centre != to_centre:
                    return False
                await db.delete(pending)
            elif case.transfer_to != to_centre:
                return False
            else:
                try:
                    self._check(case, CaseEvent.TRANSFER_REFUSED)
                    await self._move(db, case, CaseEvent.TRANSFER_REFUSED, transfer_to=None)
                except (CaseConflict, _Lost):
                    return False
            await append_audit(db, by, CaseEvent.TRANSFER_REFUSED.value, case_id,
                               detail=to_centre)
            await db.commit()
        log.info("desk.case_transfer_cancelled", case=case_id, to_centre=to_centre)
        return True

    # -- kiosks ---------------------------------------------------------------------------------

    async def receive(self, manifest: Manifest, files: Mapping[str, bytes],
                      kiosk_id: str) -> Filed:
        """File a verified package from ``kiosk_id``: a new case, pages added to one
        (``manifest.supplement``), the corrected package of a case in 补正, or the package of
        a transferred case sent to its new centre. Idempotent: a retry is ``ALREADY``.

        Raises ``CaseNotFound`` (pages for a case this kiosk did not send here) or
        ``CaseConflict``; never overwrites a file or a decision.
        """
        for _ in range(PACKAGE_ATTEMPTS):
            try:
                filed = await self._receive_once(manifest, files, kiosk_id)
            except _Lost:
                continue  # the case changed under us: read it again and decide again
            if filed is not Filed.ALREADY and not manifest.supplement:
                self.face_checker.schedule(manifest.case_id, files)  # the desk's own look
            return filed
        raise CaseConflict("the case kept changing while its papers arrived; send them again")

    async def _receive_once(self, manifest: Manifest, files: Mapping[str, bytes],
                            kiosk_id: str) -> Filed:
        digest = hashlib.sha256(manifest.canonical()).hexdigest()
        async with self.db() as db:
            case = await db.get(Case, manifest.case_id, options=[selectinload(Case.files)])
        if case is None:
            if manifest.supplement:
                raise CaseNotFound(manifest.case_id)
            return await self._file_new(manifest, files, kiosk_id, digest)
        if not manifest.supplement and case.manifest_sha256 == digest:
            return Filed.ALREADY
        event = self._refiling(case, manifest, kiosk_id)
        new = _new_files(case, manifest)
        if not new and manifest.supplement:
            return Filed.ALREADY
        self._check(case, event, code="decided" if manifest.supplement else "conflict")
        await self._store(new, files)
        async with self.db() as db:
            changes: dict[str, Any] = {}
            if event is not CaseEvent.SUPPLEMENT:
                changes.update(manifest_sha256=digest, centre=manifest.centre,
                               matter=manifest.matter, transfer_to=None)
            await self._move(db, case, event, **changes)
            db.add_all(CaseFile(case_id=case.id, name=f.name, material=f.material,
                                content_type=f.content_type, size=f.size, sha256=f.sha256)
                       for f in new)
            detail = {CaseEvent.SUPPLEMENT: f"supplement {manifest.supplement}",
                      CaseEvent.RESUBMIT: "corrected package",
                      CaseEvent.TRANSFER_IN: f"from {case.transfer_to or case.centre}"
                      if case.centre == manifest.centre else f"from {case.centre}"}[event] + \
                f": {len(new)} files"
            await append_audit(db, f"kiosk:{kiosk_id}", "transfer_in" if event is
                               CaseEvent.TRANSFER_IN else "intake", case.id, detail=detail)
            await db.commit()
        log.info("desk.case_refiled", case=case.id, how=event.value, files=len(new))
        return Filed.TRANSFERRED if event is CaseEvent.TRANSFER_IN else Filed.STORED

    async def _file_new(self, manifest: Manifest, files: Mapping[str, bytes], kiosk_id: str,
                        digest: str) -> Filed:
        await self._store(manifest.files, files)
        async with self.db() as db:
            case = Case(id=manifest.case_id, centre=manifest.centre, matter=manifest.matter,
                        kiosk_id=kiosk_id, manifest_sha256=digest,
                        received_at=datetime.now(UTC),
                        files=[CaseFile(name=f.name, material=f.material,
                                        content_type=f.content_type, size=f.size,
                                        sha256=f.sha256) for f in manifest.files])
            pending = await self._pending_transfer(db, manifest)
            if pending is not None:
                case.state = next_state(CaseState.RECEIVED, self._transfer(pending.to_centre))
                case.transfer_to = pending.to_centre
            db.add(case)
            try:
                await db.flush()
            except IntegrityError:  # a retry racing its twin: the first one filed it
                await db.rollback()
                raise _Lost(manifest.case_id) from None
            await append_audit(db, f"kiosk:{kiosk_id}", "intake", manifest.case_id,
                               detail=f"{len(manifest.files)} files")
            if pending is not None:
                await append_audit(db, pending.by, CaseEvent.TRANSFER.value, case.id,
                                   detail=f"{pending.to_centre} (asked before the papers came)")
            await db.commit()
        log.info("desk.case_received", case=manifest.case_id, files=len(manifest.files))
        return Filed.STORED

    @staticmethod
    async def _pending_transfer(db: AsyncSession, manifest: Manifest) -> PendingTransfer | None:
        """Take the transfer a clerk asked for before this case's papers came (in ``db``'s
        transaction): applied if it was asked by a clerk of the case's centre and the papers
        are not already those for the target centre."""
        pending = await db.get(PendingTransfer, manifest.case_id)
        if pending is None:
            return None
        await db.delete(pending)
        user = await _user(db, pending.by)
        if pending.to_centre == manifest.centre or user is None or \
                manifest.centre not in user.centres:
            log.info("desk.pending_transfer_dropped", case=manifest.case_id)
            return None
        return pending

    @staticmethod
    def _refiling(case: Case, manifest: Manifest, kiosk_id: str) -> CaseEvent:
        """What a package for an existing case asks for (or why it cannot be)."""
        if manifest.supplement:
            if case.kiosk_id != kiosk_id or case.centre != manifest.centre:
                raise CaseNotFound(case.id)
            return CaseEvent.SUPPLEMENT
        if case.kiosk_id != kiosk_id:
            raise CaseConflict("another package already holds this case id")
        if case.state is CaseState.TRANSFERRED and manifest.centre == case.centre:
            return CaseEvent.TRANSFER_IN  # the citizen was sent back to this centre
        if manifest.centre == case.centre:
            return CaseEvent.RESUBMIT
        if case.transfer_to != manifest.centre:
            raise CaseConflict(f"this case belongs to another centre and was not transferred "
                               f"to {manifest.centre}")
        return CaseEvent.TRANSFER_IN

    async def _store(self, entries: Sequence[ManifestFile], files: Mapping[str, bytes]) -> None:
        """Encrypt and store files before the transaction that lists them (content-addressed:
        a file stored twice is stored once)."""
        def put(name: str) -> None:
            self.blobs.put(files[name])  # the files may be on disk: read in the thread too

        for entry in entries:
            await asyncio.to_thread(put, entry.name)

    # -- transitions in the store --------------------------------------------------------------

    @staticmethod
    def _check(case: Case, event: Event, code: str = "conflict") -> None:
        """Refuse ``event`` early if the table does not allow it in the state read."""
        try:
            next_state(case.state, event, _decided_by(case))
        except TransitionRefused as exc:
            raise CaseConflict(str(exc), code) from None

    @staticmethod
    async def _move(db: AsyncSession, case: Case, event: Event, **values: Any) -> Case:
        """Carry out ``event`` on ``case`` as it was read: one UPDATE matching that state and
        version, so that of concurrent writers exactly one wins (``_Lost`` for the others).
        Returns the case as written."""
        case_id, state = case.id, next_state(case.state, event, _decided_by(case))
        moved = (await db.execute(
            update(Case).where(Case.id == case_id, Case.state == case.state,
                               Case.version == case.version)
            .values(state=state, version=case.version + 1, **values)
            .returning(Case).execution_options(populate_existing=True,
                                               synchronize_session=False))
        ).scalar_one_or_none()
        if moved is None:
            await db.rollback()
            raise _Lost(case_id)
        return moved

    async def _conflict_after_race(self, db: AsyncSession, case_id: str,
                                   event: Event) -> CaseConflict:
        """What to tell the loser of a race: what the winner made of the case."""
        case = await db.get(Case, case_id, populate_existing=True)
        if case is None:
            return CaseConflict("this case was removed meanwhile")
        try:
            self._check(case, event)
        except CaseConflict as refused:
            return refused
        return CaseConflict(f"this case changed at the same moment (it is {case.state.value} "
                            "now); look at it again and decide again")

    async def _next_number(self, db: AsyncSession, centre: str, day: date) -> str:
        """Take the centre's next number for ``day`` in this transaction (the counter row
        stays locked until it ends, and a rollback gives the number back)."""
        dialect = db.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        n = (await db.execute(
            insert(CaseCounter).values(centre=centre, day=day, last_number=1)
            .on_conflict_do_update(index_elements=[CaseCounter.centre, CaseCounter.day],
                                   set_={"last_number": CaseCounter.last_number + 1})
            .returning(CaseCounter.last_number))).scalar_one()
        return case_number(centre, day, int(n))


async def _user(db: AsyncSession, username: str) -> User | None:
    return (await db.execute(select(User).where(User.username == username))
            ).scalar_one_or_none()


def _new_files(case: Case, manifest: Manifest) -> list[ManifestFile]:
    """The package's files the case does not hold yet; a name it holds with other bytes is a
    conflict (a file is never overwritten)."""
    held = {f.name: f.sha256 for f in case.files}
    if any(held.get(f.name, f.sha256) != f.sha256 for f in manifest.files):
        raise CaseConflict("a file of that name already holds other bytes")
    return [f for f in manifest.files if f.name not in held]
