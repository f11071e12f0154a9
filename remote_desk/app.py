"""The desk server's HTTP API (aiohttp): clerk login and sessions, the case intake from kiosks,
cases and their files, decisions, and the audit trail.

Sessions are server-side; the cookie is HttpOnly, SameSite=Strict and Secure when the desk is
reached over TLS (then HSTS too). Every state-changing request of a browser carries the
session's CSRF token in ``X-CSRF-Token``. Logins are rate limited per user name at an address
and per address (the rule: ``remote_desk.users``); passwords are checked on a small thread pool.
A clerk sees only the cases of the centres they belong to; every read of a case or a file and
every decision is audited.

A clerk's socket (``/ws``) belongs to its session: only roles that serve citizens may open it,
and it is closed with a ``SessionEnd`` code (4001-4004, the page says why) at logout, idle
expiry, and within ``session_check_seconds`` of the account being disabled or its role or
centres changed; the clerk is then signed out of the hub. Every input is checked at the door:
bodies are limited per route (small JSON everywhere, large only for the intake, which is
streamed to disk), and bad input is a 4xx with a JSON message; every response, errors
included, carries the security headers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import structlog
from aiohttp import BodyPartReader, WSCloseCode, WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
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
from remote_desk.package import MAX_FILES, Manifest, PackageError, verify
from remote_desk.transitions import CaseState
from remote_desk.users import (
    CITIZEN_FACING,
    ChecksBusy,
    LoginLimiter,
    PasswordChecks,
    Role,
    authenticate,
)
from signaling.auth import CredentialStore
from signaling.protocol import MAX_EVENT_BYTES
from tongban.serving import close_long_lived

log = structlog.get_logger("remote_desk")
COOKIE = "tb_session"
STATIC = Path(__file__).parent / "static"
USER_RECHECK_SECONDS = 30.0
"""How stale a session's account may be when a request arrives (the session watcher re-reads
every ``session_check_seconds``; this catches a stalled watcher)."""
KIOSK_HEADER = "X-Tongban-Kiosk"
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_SIGNATURE_BYTES = 1024
INCOMING = "incoming"
"""Folder under ``files_dir`` where intake bodies are streamed (removed after each request)."""
REFUSED_BODY_DRAIN_BYTES = 1024 * 1024
"""After a 413 for a declared length, at most this much of the body is read and dropped (so
that the client reads the answer) before the connection is closed."""


class SessionEnd(StrEnum):
    """Why a session ended; its clerk socket closes with ``code`` and the value as reason."""

    LOGGED_OUT = "logged_out"
    EXPIRED = "session_expired"
    DISABLED = "account_disabled"
    CHANGED = "account_changed"

    @property
    def code(self) -> int:
        """The WebSocket close code (the application range 4000-4999)."""
        return {"logged_out": 4001, "session_expired": 4002, "account_disabled": 4003,
                "account_changed": 4004}[self.value]


@dataclass
class Session:
    user_id: int
    username: str
    role: Role
    centres: list[str]
    csrf: str
    last_seen: float = field(default_factory=time.monotonic)
    checked_at: float = field(default_factory=time.monotonic)
    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    """The clerk sockets opened under this session (closed when it ends)."""
    ended: SessionEnd | None = None


SESSION = web.RequestKey("session", Session)


class _IncomingFiles(Mapping[str, bytes]):
    """The files of an intake, streamed to disk: each is read back only when it is used (from
    a worker thread), so a package is never whole in memory. On disk they are sealed, chunk
    by chunk (AES-GCM), with a key that lives only in this request: papers are never at rest
    in the clear, and what a crash leaves in ``incoming/`` cannot be read by anyone."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.paths: dict[str, Path] = {}
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self._chunks = 0

    def seal(self, chunk: bytes) -> bytes:
        """One record: its length, its nonce (a counter: unique under this request's key) and
        the sealed chunk."""
        self._chunks += 1
        nonce = self._chunks.to_bytes(12, "big")
        sealed = self._aead.encrypt(nonce, chunk, None)
        return len(sealed).to_bytes(4, "big") + nonce + sealed

    def __getitem__(self, name: str) -> bytes:
        data = memoryview(self.paths[name].read_bytes())
        out = bytearray()
        at = 0
        while at < len(data):
            size = int.from_bytes(data[at:at + 4], "big")
            nonce, sealed = data[at + 4:at + 16], data[at + 16:at + 16 + size]
            out += self._aead.decrypt(bytes(nonce), bytes(sealed), None)
            at += 16 + size
        return bytes(out)

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


async def _stream_part(part: BodyPartReader, out: IO[bytes] | None, budget: int,
                       seal: Callable[[bytes], bytes] | None = None) -> int:
    """Copy one part to ``out``, each chunk through ``seal`` (writes in a thread; None:
    dropped); at most ``budget`` bytes, else 413."""
    size = 0
    while chunk := await part.read_chunk(256 * 1024):
        size += len(chunk)
        if size > budget:
            raise _error(413, "too_large", "the package is larger than this desk accepts")
        if out is not None:
            await asyncio.to_thread(out.write, seal(chunk) if seal else chunk)
    return size


async def _small_part(part: BodyPartReader, limit: int, what: str) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise _error(413, "too_large", f"the {what} is larger than {limit} bytes")
    return bytes(data)


async def _json_body(request: web.Request) -> Any:
    """The request's JSON body, or a 4xx: not JSON (415), too large (413, the app's
    ``client_max_size``), not UTF-8, malformed or nested too deeply (400)."""
    if request.content_type != "application/json":
        raise _error(415, "unsupported_type", "send the body as application/json")
    raw = await request.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise _error(400, "invalid", "the body is not well-formed JSON") from None


def _error(status: int, code: str, message: str, *, retry_after: int | None = None
           ) -> web.HTTPException:
    """A JSON error ({error, message}; with ``retry_after`` also that field and the header)."""
    classes: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
        404: web.HTTPNotFound, 409: web.HTTPConflict, 413: web.HTTPRequestEntityTooLarge,
        415: web.HTTPUnsupportedMediaType, 429: web.HTTPTooManyRequests,
        503: web.HTTPServiceUnavailable}
    body: dict[str, Any] = {"error": code, "message": message}
    headers = {}
    if retry_after is not None:
        body["retry_after_s"] = retry_after
        headers["Retry-After"] = str(retry_after)
    text = json.dumps(body, ensure_ascii=False)
    if status == 413:
        return web.HTTPRequestEntityTooLarge(max_size=0, actual_size=0, text=text,
                                             content_type="application/json", headers=headers)
    return classes[status](text=text, content_type="application/json", headers=headers)


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
        self.limiter = LoginLimiter(config.login_attempts, config.login_address_attempts,
                                    config.login_window_seconds)
        self.password_checks = PasswordChecks(config.password_workers)
        self.incoming = config.files_dir / INCOMING
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self.app = web.Application(middlewares=[self._errors, self._body_limit,
                                                self._store_busy, self._auth],
                                   client_max_size=config.max_json_bytes)
        self.app.on_response_prepare.append(self._security_headers)
        self.app.on_startup.append(self._start_watcher)
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
        close_long_lived(self.app)  # stopping closes the clerks' WebSockets, never waits
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
        # the watcher and session ends may be inside a store call: they finish their
        # cancellation before the engine goes (else they wait on a closed connection forever)
        pending = [t for t in (self._watcher, *self._tasks) if t is not None]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self.hub is not None:
            await self.hub.close()
        if self._anchoring is not None:
            self._anchoring.cancel()
            await asyncio.gather(self._anchoring, return_exceptions=True)
        await self.cases.face_checker.close()
        await self.anchor_audit()  # the last entries of this run
        self.password_checks.close()
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

    # -- sessions and their sockets ---------------------------------------------------------

    async def _start_watcher(self, app: web.Application) -> None:
        del app
        await asyncio.to_thread(shutil.rmtree, self.incoming, True)  # a crash's leftovers
        self._watcher = asyncio.create_task(self._watch_sessions())

    async def _watch_sessions(self) -> None:
        """Every ``session_check_seconds``: end idle sessions and those whose account was
        disabled, removed, or given another role or centres (closing their sockets)."""
        while True:
            await asyncio.sleep(self.config.session_check_seconds)
            try:
                await self._check_sessions()
            except Exception as exc:  # the watcher must outlive a failing store
                log.warning("desk.session_check_failed", error=type(exc).__name__)

    async def _check_sessions(self) -> None:
        self.limiter.prune()
        now = time.monotonic()
        idle = self.config.session_idle_minutes * 60
        for token, session in list(self.sessions.items()):
            if self.hub is not None and session.sockets and self.hub.in_call(session.username):
                session.last_seen = now  # talking to a citizen is not idle
            if now - session.last_seen > idle:
                self._end_session(token, SessionEnd.EXPIRED)
        checked = list(self.sessions.items())  # sessions begun during the query wait a round
        if not checked:
            return
        async with self.db() as db:
            users = {u.id: u for u in (await db.execute(select(User).where(
                User.id.in_({s.user_id for _, s in checked})))).scalars()}
        for token, session in checked:
            if self.sessions.get(token) is not session:
                continue
            why = self._account_change(session, users.get(session.user_id))
            if why is not None:
                self._end_session(token, why)
            else:
                session.checked_at = now

    @staticmethod
    def _account_change(session: Session, user: User | None) -> SessionEnd | None:
        if user is None or user.disabled:
            return SessionEnd.DISABLED
        if user.role != session.role.value or sorted(user.centres) != sorted(session.centres):
            return SessionEnd.CHANGED
        return None

    def _end_session(self, token: str, why: SessionEnd) -> None:
        """End a session now: no request or socket frame is accepted under it from here;
        its sockets close and (unless another session of the clerk still has one) the clerk
        is signed out of the hub, in the background."""
        session = self.sessions.pop(token, None)
        if session is None or session.ended is not None:
            return
        session.ended = why
        if self.hub is not None:
            self.hub.release(session.username, session.sockets)
        log.info("desk.session_ended", user=session.username, why=why.value,
                 sockets=len(session.sockets))
        task = asyncio.create_task(self._finish_session(session, why))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish_session(self, session: Session, why: SessionEnd) -> None:
        sockets = list(session.sockets)
        others = any(s.username == session.username and s.sockets
                     for s in self.sessions.values())
        steps: list[Coroutine[Any, Any, object]] = [
            ws.close(code=why.code, message=why.value.encode()) for ws in sockets]
        if self.hub is not None and sockets and not others:
            steps.append(self.hub.sign_out(session.username, session.centres,
                                           reason="hangup" if why is SessionEnd.LOGGED_OUT
                                           else "failed"))
        for result in await asyncio.gather(*steps, return_exceptions=True):
            if isinstance(result, Exception):
                log.warning("desk.session_end_step_failed", error=type(result).__name__)

    async def clerk_socket(self, request: web.Request) -> web.WebSocketResponse:
        """The clerk's browser: hub events in, call signaling and queue actions out. Only
        roles that serve citizens; the socket lives no longer than its session."""
        s = request[SESSION]
        if not secrets.compare_digest(request.query.get("csrf", ""), s.csrf):
            raise _error(403, "csrf", "missing or wrong CSRF token")
        if s.role not in CITIZEN_FACING:
            raise _error(403, "forbidden", "only clerks and supervisors serve citizens")
        if self.hub is None:
            raise _error(409, "no_hub", "this desk is not connected to a hub")
        ws = web.WebSocketResponse(heartbeat=10, max_msg_size=MAX_EVENT_BYTES)
        await ws.prepare(request)
        if s.ended is not None:  # ended while the handshake was under way
            await ws.close(code=s.ended.code, message=s.ended.value.encode())
            return ws
        s.sockets.add(ws)
        link = ClerkLink(s.username, s.centres, ws)
        self.hub.attach(link)
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT or s.ended is not None:
                    break
                s.last_seen = time.monotonic()  # what the clerk does counts as activity
                try:
                    body = json.loads(msg.data)
                    event, data = str(body["event"]), body.get("data")
                except (ValueError, KeyError, TypeError, RecursionError):
                    await ws.send_json({"event": "desk.error", "data": {"message": "bad frame"}})
                    continue
                error = await self.hub.from_browser(link, event, data)
                if error:
                    await ws.send_json({"event": "desk.error", "data": {"message": error,
                                                                         "for": event}})
        except Exception as exc:  # the socket is upgraded: no HTTP 500 can follow
            log.error("desk.socket_failed", error=type(exc).__name__)
            await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal error")
        finally:
            s.sockets.discard(ws)
            if s.ended is None:
                await self.hub.detach(link)  # else the session's end signs the clerk out
        return ws

    # -- middlewares ----------------------------------------------------------------------------

    async def _security_headers(self, request: web.Request,
                                response: web.StreamResponse) -> None:
        """On every response the app prepares: pages, API answers, errors (its own and
        aiohttp's), files and the socket handshake."""
        headers = response.headers
        headers.setdefault("Content-Security-Policy", "default-src 'self'")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cache-Control", "no-store")
        if self.config.serves_tls or request.secure:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every error is JSON with a code and a message: aiohttp's own (404, 405, 413 ...)
        are rewritten, and an unexpected failure is a 500 logged without its details (they
        may hold personal data), never a traceback to the client."""
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or exc.content_type == "application/json":
                raise
            keep = {k: v for k, v in exc.headers.items()
                    if k.lower() not in ("content-type", "content-length")}
            return web.json_response({"error": exc.reason.lower().replace(" ", "_"),
                                      "message": exc.reason}, status=exc.status, headers=keep)
        except Exception as exc:
            frame = exc.__traceback__
            while frame is not None and frame.tb_next is not None:
                frame = frame.tb_next
            where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"
            log.error("desk.internal_error", path=request.path, error=type(exc).__name__,
                      at=where)
            return web.json_response({"error": "internal", "message": "the desk failed on "
                                      "this request; nothing was changed by it"}, status=500)
        return response

    @web.middleware
    async def _body_limit(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Bodies are limited per route: ``max_upload_bytes`` for the intake (counted again
        as it streams), ``max_json_bytes`` for everything else (``client_max_size``). A
        declared length over the limit is refused before the body is read."""
        limit = self.config.max_upload_bytes if request.path == "/api/intake" else \
            self.config.max_json_bytes
        if request.content_length is not None and request.content_length > limit:
            log.info("desk.body_refused", path=request.path, declared=request.content_length)
            response = web.json_response(
                {"error": "too_large", "message": f"request bodies here are limited to "
                 f"{limit} bytes"}, status=413, headers={"Connection": "close"})
            response.force_close()
            await response.prepare(request)
            await response.write_eof()
            # drop a little of what the client is still sending, so that it can read this
            # answer before the connection closes; never the whole body
            dropped, deadline = 0, time.monotonic() + 1.0
            with contextlib.suppress(Exception):
                while dropped < REFUSED_BODY_DRAIN_BYTES and time.monotonic() < deadline:
                    chunk = await asyncio.wait_for(request.content.readany(),
                                                   deadline - time.monotonic())
                    if not chunk:
                        break
                    dropped += len(chunk)
            request.protocol.force_close()
            return response
        handled: web.StreamResponse = await handler(request)
        return handled

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
                self._end_session(token, SessionEnd.EXPIRED)
                raise _error(401, "login_required", "please log in")
            if request.method not in ("GET", "HEAD") and not secrets.compare_digest(
                    request.headers.get("X-CSRF-Token", ""), session.csrf):
                raise _error(403, "csrf", "missing or wrong CSRF token")
            if time.monotonic() - session.checked_at > USER_RECHECK_SECONDS:
                async with self.db() as db:  # a disabled account loses its sessions
                    user = await db.get(User, session.user_id)
                why = self._account_change(session, user)
                if why is not None:
                    self._end_session(token, why)
                    raise _error(401, "login_required", "this account is disabled"
                                 if why is SessionEnd.DISABLED else "this account changed; "
                                 "please log in again")
                session.checked_at = time.monotonic()
            session.last_seen = time.monotonic()
            request[SESSION] = session
        response: web.StreamResponse = await handler(request)
        return response

    # -- login ------------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("username"), str) or \
                not isinstance(body.get("password"), str) or not body["username"] or \
                len(body["username"]) > 64 or len(body["password"]) > 1024:
            raise _error(400, "invalid", "username and password are required")
        username, password = body["username"], body["password"]
        peer = request.remote or "?"
        wait = self.limiter.retry_after(username, peer)
        if wait > 0:
            seconds = int(wait) + 1
            raise _error(429, "rate_limited", f"too many failed logins from this address; "
                         f"try again in {seconds} s", retry_after=seconds)
        attempt = self.limiter.attempt(username, peer)
        async with self.db() as db:
            try:
                user = await authenticate(db, username, password, self.password_checks)
            except ChecksBusy:
                self.limiter.withdraw(username, peer, attempt)  # not checked: not counted
                raise _error(503, "busy", "too many logins at once; try again shortly",
                             retry_after=1) from None
            if user is None:
                await append_audit(db, username[:64], "login_failed", peer)
                await db.commit()
                raise _error(401, "bad_login", "wrong user name or password")
            await append_audit(db, user.username, "login", peer)
            await db.commit()
        self.limiter.succeeded(username, peer, attempt)
        token = secrets.token_urlsafe(32)
        session = Session(user.id, user.username, Role(user.role), list(user.centres),
                          secrets.token_urlsafe(24))
        self.sessions[token] = session
        response = web.json_response({"username": user.username, "role": user.role,
                                      "centres": user.centres, "csrf": session.csrf,
                                      "matters": self.config.matters})
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict",
                            secure=self.config.serves_tls or request.secure, path="/")
        return response

    async def logout(self, request: web.Request) -> web.Response:
        self._end_session(request.cookies.get(COOKIE, ""), SessionEnd.LOGGED_OUT)
        response = web.json_response({"ok": True})
        response.del_cookie(COOKIE, path="/", secure=self.config.serves_tls or request.secure,
                            httponly=True, samesite="Strict")
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
            decision = Decision.model_validate(await _json_body(request))
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
        text = request.query.get("limit", "100")
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 500:
            raise _error(400, "invalid", "limit is a whole number from 1 to 500")
        limit = int(text)
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
        body = await _json_body(request)
        clerk = body.get("clerk") if isinstance(body, dict) else None
        if not isinstance(clerk, str) or not 0 < len(clerk) <= 64:
            raise _error(400, "invalid", "name the clerk")
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
        if request.content_type != "multipart/form-data" or \
                not request.headers.get("Content-Type", "").count("boundary="):
            raise _error(415, "unsupported_type", "send the package as multipart/form-data "
                         "with a boundary")
        await asyncio.to_thread(self.incoming.mkdir, parents=True, exist_ok=True)
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, dir=self.incoming))
        try:
            manifest, files = await self._receive_package(request, folder, credential.public_key,
                                                          kiosk_id)
            if manifest.centre not in self.config.centres:
                raise _error(403, "wrong_centre", "this desk does not serve that centre")
            try:
                filed = await self.cases.receive(manifest, files, kiosk_id)
            except CaseNotFound:
                raise _error(404, "not_found", "no such case from this kiosk") from None
            except CaseConflict as exc:
                raise _error(409, exc.code, str(exc)) from None
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
        return web.json_response({"case_id": manifest.case_id, "status": filed.value},
                                 status=200 if filed is Filed.ALREADY else 201)

    async def _receive_package(self, request: web.Request, folder: Path, public_key: str,
                               kiosk_id: str) -> tuple[Manifest, _IncomingFiles]:
        """Stream the parts to ``folder`` (at most ``max_upload_bytes`` in all), then verify
        the package from there (in a thread: hashing is long)."""
        manifest_json = b""
        signature_bytes = b""
        files = _IncomingFiles(folder)
        budget = self.config.max_upload_bytes
        try:
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    raise _error(400, "invalid", "nested multipart is not accepted")
                if part.name == "manifest":
                    manifest_json = await _small_part(part, MAX_MANIFEST_BYTES, "manifest")
                    budget -= len(manifest_json)
                elif part.name == "signature":
                    signature_bytes = await _small_part(part, MAX_SIGNATURE_BYTES, "signature")
                elif part.name == "file" and part.filename:
                    if part.filename in files.paths or len(files) >= MAX_FILES:
                        raise _error(400, "invalid", "a file is sent twice, or too many files")
                    path = folder / f"{len(files):04d}"
                    out = await asyncio.to_thread(path.open, "wb")
                    try:
                        budget -= await _stream_part(part, out, budget, files.seal)
                    finally:
                        await asyncio.to_thread(out.close)
                    files.paths[part.filename] = path
                else:  # a part the package format does not have: dropped, but counted
                    budget -= await _stream_part(part, None, min(budget, MAX_MANIFEST_BYTES))
        except (ValueError, AssertionError, LookupError, HttpProcessingError) as exc:
            # aiohttp's multipart reader: no boundary, a bad part header, a truncated body
            log.info("desk.package_malformed", kiosk=kiosk_id, error=type(exc).__name__)
            raise _error(400, "malformed", "the package is not well-formed multipart") \
                from None
        except web.HTTPException:
            raise
        except (asyncio.IncompleteReadError, ConnectionError, EOFError) as exc:
            log.info("desk.package_truncated", kiosk=kiosk_id, error=type(exc).__name__)
            raise _error(400, "malformed", "the package ended before its last part") from None
        try:
            signature = signature_bytes.decode("ascii")
        except UnicodeDecodeError:
            raise _error(400, "bad_signature", "the signature is not base64 text") from None
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
        try:
            manifest = await asyncio.to_thread(verify, manifest_json, signature, public, files,
                                               kiosk_id=kiosk_id)
        except PackageError as exc:
            log.info("desk.package_refused", kiosk=kiosk_id, code=exc.code)
            raise _error(400, exc.code, str(exc)) from None
        return manifest, files


async def user_count(engine: AsyncEngine) -> int:
    async with sessions(engine)() as db:
        return int((await db.execute(select(func.count()).select_from(User))).scalar_one())
