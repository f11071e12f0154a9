"""The desk server's HTTP API (aiohttp): clerk login and sessions, the case intake from kiosks,
cases and their files, decisions, and the audit trail.

Sessions are server-side; the cookie is HttpOnly, SameSite=Strict and Secure behind TLS. Every
state-changing request of a browser carries the session's CSRF token in ``X-CSRF-Token``.
Logins are rate limited per user name and address. A clerk sees only the cases of the centres
they belong to; every read of a case or a file and every decision is audited.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from aiohttp import BodyPartReader, WSMsgType, web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from remote_desk import audit, facecheck
from remote_desk.blobs import BlobError, BlobStore
from remote_desk.cases import CaseConflict, CaseNotFound, CaseService, Decision, Filed
from remote_desk.config import DeskConfig
from remote_desk.db import append_audit, is_contention, make_engine, sessions
from remote_desk.hublink import ClerkLink, HubLink
from remote_desk.models import AuditEntry, Case, CaseFile, User
from remote_desk.package import PackageError, verify
from remote_desk.transitions import CaseState
from remote_desk.users import Role, authenticate
from signaling.auth import CredentialStore
from signaling.protocol import MAX_EVENT_BYTES

log = structlog.get_logger("remote_desk")
COOKIE = "tb_session"
STATIC = Path(__file__).parent / "static"
USER_RECHECK_SECONDS = 30.0
"""How often a session's account is re-read (a disabled account is logged out)."""
KIOSK_HEADER = "X-Tongban-Kiosk"


@dataclass
class Session:
    user_id: int
    username: str
    role: Role
    centres: list[str]
    csrf: str
    last_seen: float = field(default_factory=time.monotonic)
    checked_at: float = field(default_factory=time.monotonic)


SESSION = web.RequestKey("session", Session)


def _error(status: int, code: str, message: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
           404: web.HTTPNotFound, 409: web.HTTPConflict, 413: web.HTTPRequestEntityTooLarge,
           429: web.HTTPTooManyRequests, 503: web.HTTPServiceUnavailable}[status]
    if status == 413:
        return web.HTTPRequestEntityTooLarge(max_size=0, actual_size=0, text=json.dumps(
            {"error": code, "message": message}), content_type="application/json")
    error: web.HTTPException = cls(text=json.dumps({"error": code, "message": message}),
                                   content_type="application/json")
    return error


class DeskApp:
    """One desk server."""

    def __init__(self, config: DeskConfig, *, files_key: bytes | None = None,
                 engine: AsyncEngine | None = None) -> None:
        self.config = config
        self.engine = engine or make_engine(config.database)
        self.db: async_sessionmaker = sessions(self.engine)  # type: ignore[type-arg]
        files_key = files_key or config.files_key()
        self.blobs = BlobStore(config.files_dir, files_key)
        self.anchors = audit.AnchorFile(config.anchor_file())
        self.anchor_key = audit.anchor_key(files_key)
        self.anchorer = audit.Anchorer(self.anchors, self.anchor_key)
        self.kiosks = CredentialStore(config.kiosk_credentials)
        self.cases = CaseService(self.db, self.blobs, config.timezone, config.centres)
        self.sessions: dict[str, Session] = {}
        self.failures: dict[str, list[float]] = {}
        self.app = web.Application(middlewares=[self._security, self._store_busy, self._auth],
                                   client_max_size=config.max_upload_bytes)
        r = self.app.router
        r.add_post("/api/login", self.login)
        r.add_post("/api/logout", self.logout)
        r.add_get("/api/me", self.me)
        r.add_get("/api/cases", self.list_cases)
        r.add_get("/api/cases/{case_id}", self.get_case)
        r.add_get("/api/cases/{case_id}/files/{name}", self.get_file)
        r.add_post("/api/cases/{case_id}/decision", self.decide)
        r.add_get("/api/audit/verify", self.audit_verify)
        r.add_get("/api/audit", self.audit_list)
        r.add_get("/api/overdue", self.overdue)
        r.add_post("/api/cases/{case_id}/assign", self.assign)
        r.add_post("/api/intake", self.intake)
        r.add_get("/healthz", self.healthz)
        r.add_get("/ws", self.clerk_socket)
        r.add_get("/", self.index)
        r.add_static("/static", STATIC, show_index=False)
        self._hub: HubLink | None = None
        self._anchoring: asyncio.Task[None] | None = None
        self.app.on_startup.append(self._start_anchoring)
        self.app.on_cleanup.append(self._close)

    @property
    def hub(self) -> HubLink | None:
        """The desk's connection to a hub, set by the server when there is one."""
        return self._hub

    @hub.setter
    def hub(self, hub: HubLink | None) -> None:
        """Attach a hub: a clerk's transfer of a citizen to another centre then marks the case
        to follow them (``CaseService.mark_transferred``)."""
        self._hub = hub
        if hub is not None:
            hub.on_transfer = self.cases.mark_transferred
            hub.on_transfer_refused = self.cases.cancel_transfer

    async def _close(self, app: web.Application) -> None:
        del app
        if self.hub is not None:
            await self.hub.close()
        if self._anchoring is not None:
            self._anchoring.cancel()
            await asyncio.gather(self._anchoring, return_exceptions=True)
        await self.cases.face_checker.close()
        await self.anchor_audit()  # the last entries of this run
        await self.engine.dispose()

    # -- the audit chain's anchors ----------------------------------------------------------

    async def _start_anchoring(self, app: web.Application) -> None:
        del app
        self._anchoring = asyncio.create_task(self._anchor_loop(), name="audit-anchors")

    async def _anchor_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.audit_anchor_seconds)
            await self.anchor_audit()

    async def anchor_audit(self) -> audit.Anchor | None:
        """Anchor the chain's head if it moved; a failure is logged and tried again later."""
        try:
            async with self.db() as db:
                return await self.anchorer.anchor(db)
        except (DBAPIError, OSError) as exc:
            log.error("desk.audit_anchor_failed", error=type(exc).__name__)
            return None

    async def clerk_socket(self, request: web.Request) -> web.WebSocketResponse:
        """The clerk's browser: hub events in, call signaling and queue actions out."""
        s = request[SESSION]
        if not secrets.compare_digest(request.query.get("csrf", ""), s.csrf):
            raise _error(403, "csrf", "missing or wrong CSRF token")
        if self.hub is None:
            raise _error(409, "no_hub", "this desk is not connected to a hub")
        ws = web.WebSocketResponse(heartbeat=10, max_msg_size=MAX_EVENT_BYTES)
        await ws.prepare(request)
        link = ClerkLink(s.username, s.centres, ws)
        self.hub.attach(link)
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    break
                try:
                    body = json.loads(msg.data)
                    event, data = str(body["event"]), body.get("data")
                except (ValueError, KeyError, TypeError):
                    await ws.send_json({"event": "desk.error", "data": {"message": "bad frame"}})
                    continue
                error = await self.hub.from_browser(link, event, data)
                if error:
                    await ws.send_json({"event": "desk.error", "data": {"message": error,
                                                                         "for": event}})
        finally:
            await self.hub.detach(link)
        return ws

    # -- middlewares ----------------------------------------------------------------------------

    @web.middleware
    async def _security(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        response.headers.setdefault("Content-Security-Policy", "default-src 'self'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @web.middleware
    async def _store_busy(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """The store gave up waiting for other transactions: nothing was written, so say so
        (409 to clerks; 503 to kiosks, whose uploads are retried on 5xx) rather than 500."""
        try:
            response: web.StreamResponse = await handler(request)
        except DBAPIError as exc:
            if not is_contention(exc):
                raise
            log.warning("desk.store_busy", path=request.path)
            raise _error(503 if request.path == "/api/intake" else 409, "busy",
                         "the case store is busy with other requests; nothing was changed, "
                         "try again") from None
        return response

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        public = request.path in ("/", "/api/login", "/api/intake", "/healthz") or \
            request.path.startswith("/static/")
        if not public:
            token = request.cookies.get(COOKIE, "")
            session = self.sessions.get(token)
            idle = self.config.session_idle_minutes * 60
            if session is None or time.monotonic() - session.last_seen > idle:
                self.sessions.pop(token, None)
                raise _error(401, "login_required", "please log in")
            if request.method not in ("GET", "HEAD") and not secrets.compare_digest(
                    request.headers.get("X-CSRF-Token", ""), session.csrf):
                raise _error(403, "csrf", "missing or wrong CSRF token")
            if time.monotonic() - session.checked_at > USER_RECHECK_SECONDS:
                async with self.db() as db:  # a disabled account loses its sessions
                    user = await db.get(User, session.user_id)
                if user is None or user.disabled:
                    self.sessions.pop(token, None)
                    raise _error(401, "login_required", "this account is disabled")
                session.checked_at = time.monotonic()
            session.last_seen = time.monotonic()
            request[SESSION] = session
        response: web.StreamResponse = await handler(request)
        return response

    # -- login ------------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            username, password = str(body["username"]), str(body["password"])
        except (ValueError, KeyError, TypeError):
            raise _error(400, "invalid", "username and password are required") from None
        peer = request.remote or "?"
        key = f"{username}|{peer}"
        now = time.monotonic()
        window = self.config.login_window_seconds
        recent = [t for t in self.failures.get(key, []) if now - t < window]
        if len(recent) >= self.config.login_attempts:
            raise _error(429, "rate_limited", "too many failed logins; wait and try again")
        async with self.db() as db:
            user = await authenticate(db, username, password)
            if user is None:
                self.failures[key] = [*recent, now]
                await append_audit(db, username[:64] or "?", "login_failed", peer)
                await db.commit()
                raise _error(401, "bad_login", "wrong user name or password")
            await append_audit(db, user.username, "login", peer)
            await db.commit()
        self.failures.pop(key, None)
        token = secrets.token_urlsafe(32)
        session = Session(user.id, user.username, Role(user.role), list(user.centres),
                          secrets.token_urlsafe(24))
        self.sessions[token] = session
        response = web.json_response({"username": user.username, "role": user.role,
                                      "centres": user.centres, "csrf": session.csrf,
                                      "matters": self.config.matters})
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict",
                            secure=self.config.behind_tls, path="/")
        return response

    async def logout(self, request: web.Request) -> web.Response:
        self.sessions.pop(request.cookies.get(COOKIE, ""), None)
        response = web.json_response({"ok": True})
        response.del_cookie(COOKIE, path="/")
        return response

    async def me(self, request: web.Request) -> web.Response:
        s = request[SESSION]
        return web.json_response({"username": s.username, "role": s.role.value,
                                  "centres": s.centres, "csrf": s.csrf,
                                  "matters": self.config.matters})

    async def index(self, request: web.Request) -> web.FileResponse:
        del request
        return web.FileResponse(STATIC / "index.html")

    async def healthz(self, request: web.Request) -> web.Response:
        del request
        return web.json_response({"ok": True})

    # -- cases ------------------------------------------------------------------------------

    def _may_see(self, session: Session, case: Case | None) -> Case:
        if case is None or case.centre not in session.centres:
            raise _error(404, "not_found", "no such case")  # another centre's case: not found
        return case

    @staticmethod
    def _summary(case: Case) -> dict[str, Any]:
        return {"id": case.id, "centre": case.centre, "matter": case.matter,
                "state": case.state, "case_number": case.case_number,
                "received_at": case.received_at.isoformat(),
                "decision": case.decision, "assigned_to": case.assigned_to}

    async def list_cases(self, request: web.Request) -> web.Response:
        s = request[SESSION]
        async with self.db() as db:
            rows = (await db.execute(select(Case).where(Case.centre.in_(s.centres))
                                     .order_by(Case.received_at.desc()).limit(200))).scalars()
            return web.json_response({"cases": [self._summary(c) for c in rows]})

    async def get_case(self, request: web.Request) -> web.Response:
        s = request[SESSION]
        async with self.db() as db:
            case = self._may_see(s, await db.get(Case, request.match_info["case_id"]))
            files = (await db.execute(select(CaseFile).where(CaseFile.case_id == case.id))
                     ).scalars().all()
            face_check = await facecheck.latest(db, case.id)  # the desk's re-check
            await append_audit(db, s.username, "view", case.id)
            await db.commit()
            # only packages whose Ed25519 signature and every hash verified are ever stored
            signature = {"verified": True, "kiosk_id": case.kiosk_id,
                         "manifest_sha256": case.manifest_sha256}
            return web.json_response({**self._summary(case), "signature": signature,
                                      "face_check": face_check, "files": [
                {"name": f.name, "material": f.material, "content_type": f.content_type,
                 "size": f.size, "sha256": f.sha256} for f in files]})

    async def get_file(self, request: web.Request) -> web.Response:
        s = request[SESSION]
        async with self.db() as db:
            case = self._may_see(s, await db.get(Case, request.match_info["case_id"]))
            entry = (await db.execute(select(CaseFile).where(
                CaseFile.case_id == case.id, CaseFile.name == request.match_info["name"]))
                ).scalar_one_or_none()
            if entry is None:
                raise _error(404, "not_found", "no such file")
            try:
                data = self.blobs.get(entry.sha256)
            except BlobError as exc:
                log.error("desk.file_unreadable", case=case.id, error=str(exc))
                raise _error(409, "file_unreadable", str(exc)) from None
            await append_audit(db, s.username, "download", f"{case.id}/{entry.name}")
            await db.commit()
        return web.Response(body=data, content_type=entry.content_type)

    async def decide(self, request: web.Request) -> web.Response:
        s = request[SESSION]
        if s.role not in (Role.CLERK, Role.SUPERVISOR):
            raise _error(403, "forbidden", "only clerks and supervisors decide")
        try:
            decision = Decision.model_validate(await request.json())
        except (ValidationError, ValueError) as exc:
            message = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise _error(400, "invalid", message) from None
        try:
            case = await self.cases.decide(request.match_info["case_id"], decision,
                                           clerk=s.username, centres=s.centres)
        except CaseNotFound:
            raise _error(404, "not_found", "no such case") from None
        except CaseConflict as exc:
            raise _error(409, exc.code, str(exc)) from None
        return web.json_response(self._summary(case))

    async def audit_list(self, request: web.Request) -> web.Response:
        """The newest audit entries (ids and actions only: no personal data is in them)."""
        s = request[SESSION]
        if s.role not in (Role.AUDITOR, Role.ADMIN):
            raise _error(403, "forbidden", "auditors and admins only")
        limit = min(500, max(1, int(request.query.get("limit", "100"))))
        async with self.db() as db:
            rows = (await db.execute(select(AuditEntry).order_by(AuditEntry.id.desc())
                                     .limit(limit))).scalars().all()
            await append_audit(db, s.username, "audit_read", f"last {limit}")
            await db.commit()
        return web.json_response({"entries": [
            {"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "action": e.action,
             "target": e.target, "detail": e.detail} for e in rows]})

    async def overdue(self, request: web.Request) -> web.Response:
        """Supervisors: 容缺受理 cases whose commitment deadline has passed."""
        s = request[SESSION]
        if s.role not in (Role.SUPERVISOR, Role.ADMIN):
            raise _error(403, "forbidden", "supervisors only")
        today = datetime.now(ZoneInfo(self.config.timezone)).date().isoformat()
        async with self.db() as db:
            rows = (await db.execute(select(Case).where(
                Case.centre.in_(s.centres), Case.state == CaseState.ACCEPTED_PENDING))).scalars()
            late = [self._summary(c) for c in rows
                    if str((c.decision or {}).get("deadline", "9999")) < today]
        return web.json_response({"overdue": late})

    async def assign(self, request: web.Request) -> web.Response:
        """Supervisors: hand a case to another clerk of the centre."""
        s = request[SESSION]
        if s.role is not Role.SUPERVISOR:
            raise _error(403, "forbidden", "supervisors only")
        try:
            clerk = str((await request.json())["clerk"])
        except (ValueError, KeyError, TypeError):
            raise _error(400, "invalid", "name the clerk") from None
        async with self.db() as db:
            case = self._may_see(s, await db.get(Case, request.match_info["case_id"]))
            target = (await db.execute(select(User).where(User.username == clerk))
                      ).scalar_one_or_none()
            if target is None or target.disabled or case.centre not in target.centres:
                raise _error(400, "invalid", "no such clerk at this case's centre")
            case.assigned_to = clerk
            await append_audit(db, s.username, "assign", case.id, detail=clerk)
            await db.commit()
            return web.json_response(self._summary(case))

    async def audit_verify(self, request: web.Request) -> web.Response:
        s = request[SESSION]
        if s.role not in (Role.AUDITOR, Role.ADMIN, Role.SUPERVISOR):
            raise _error(403, "forbidden", "auditors, supervisors and admins only")
        anchors, bad = await asyncio.to_thread(self.anchors.read)
        async with self.db() as db:
            check = await audit.verify(db, anchors, self.anchor_key.public_key(), bad_lines=bad)
        return web.json_response(check.as_dict())

    # -- intake from kiosks -----------------------------------------------------------------

    async def intake(self, request: web.Request) -> web.Response:
        kiosk_id = request.headers.get(KIOSK_HEADER, "")
        credential = self.kiosks.get(kiosk_id) if kiosk_id else None
        if credential is None or credential.revoked_at is not None or \
                credential.kind.value != "kiosk":
            raise _error(401, "unknown_kiosk", "no live credential for this kiosk")
        if request.content_length and request.content_length > self.config.max_upload_bytes:
            raise _error(413, "too_large", "the package is larger than this desk accepts")
        manifest_json = b""
        signature = ""
        files: dict[str, bytes] = {}
        try:
            reader = await request.multipart()
            total = 0
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    raise _error(400, "invalid", "nested multipart is not accepted")
                chunks = []
                while chunk := await part.read_chunk(256 * 1024):
                    total += len(chunk)
                    if total > self.config.max_upload_bytes:  # chunked uploads have no length
                        raise web.HTTPRequestEntityTooLarge(self.config.max_upload_bytes, total)
                    chunks.append(chunk)
                data = b"".join(chunks)
                if part.name == "manifest":
                    manifest_json = bytes(data)
                elif part.name == "signature":
                    signature = bytes(data).decode()
                elif part.name == "file" and part.filename:
                    files[part.filename] = bytes(data)
        except web.HTTPRequestEntityTooLarge:
            raise _error(413, "too_large", "the package is larger than this desk accepts") \
                from None
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(credential.public_key))
        try:
            manifest = verify(manifest_json, signature, public, files, kiosk_id=kiosk_id)
        except PackageError as exc:
            log.info("desk.package_refused", kiosk=kiosk_id, code=exc.code)
            raise _error(400, exc.code, str(exc)) from None
        if manifest.centre not in self.config.centres:
            raise _error(403, "wrong_centre", "this desk does not serve that centre")
        try:
            filed = await self.cases.receive(manifest, files, kiosk_id)
        except CaseNotFound:
            raise _error(404, "not_found", "no such case from this kiosk") from None
        except CaseConflict as exc:
            raise _error(409, exc.code, str(exc)) from None
        return web.json_response({"case_id": manifest.case_id, "status": filed.value},
                                 status=200 if filed is Filed.ALREADY else 201)


async def user_count(engine: AsyncEngine) -> int:
    async with sessions(engine)() as db:
        return int((await db.execute(select(func.count()).select_from(User))).scalar_one())
