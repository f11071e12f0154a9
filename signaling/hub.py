"""The signaling hub: python-socketio (asyncio) on aiohttp.

Kiosks and desk servers connect over WebSocket only (no long-polling: every request of a
session reaches the same process by construction, so a load balancer needs no sticky
sessions). They authenticate with a signed token; every event is validated against its model
in ``protocol``; a party can touch only its own tickets and calls. With a Redis URL, several
hub processes share rooms through python-socketio's Redis manager (``relay.HubRedisManager``:
ordered publishing, and the call routes the relay remembers) and keep all state in Redis, so a
process can die without losing a ticket.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import socketio
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from signaling import policy
from signaling import protocol as p
from signaling.auth import AuthError, Credential, CredentialStore, TokenVerifier
from signaling.directory import Directory, load_directory
from signaling.relay import RELAYED_EVENTS, CallRoutes, HubRedisManager, Route
from signaling.store import (
    Call,
    Clerk,
    ClientRecord,
    MemoryStore,
    RedisStore,
    ServiceTime,
    Store,
    Ticket,
    clerk_key,
)
from signaling.turn import ice_servers_for

log = structlog.get_logger("signaling.hub")


class RateLimit(BaseModel):
    """A token bucket: ``rate`` events per second on average, ``burst`` at once."""

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(gt=0, le=10_000)
    burst: float = Field(ge=1, le=100_000)


class HubConfig(BaseModel):
    """``[hub]`` in the hub's config file."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    redis: str | None = Field(None, description="redis://host:port/db for several processes")
    redis_channel: str = Field("tongban-hub", description="pub/sub channel of the processes")
    redis_prefix: str = Field("tb:", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$",
                              description="prefix of the hub's keys in Redis (one per region)")
    credentials: Path = Path("hub-credentials.json")
    directory: Path | None = Field(None, description="centres, matters and sites (TOML)")
    grace_seconds: float = Field(30.0, gt=0, le=600, description="how long a vanished party "
                                                                 "keeps its tickets and calls")
    offer_seconds: float = Field(30.0, gt=0, le=600, description="an unanswered offer goes "
                                                                 "back to the queue")
    ping_interval: float = Field(4.0, gt=0, le=60)
    ping_timeout: float = Field(5.0, gt=0, le=60)
    token_max_ttl: int = Field(120, ge=10, le=3600)
    process_name: str = Field(default_factory=lambda: f"hub-{os.getpid()}")
    revocation_check_s: float = Field(1.0, gt=0, le=60, description="how often the "
                                      "credentials are checked for revoked live clients")
    kiosk_open_tickets: int = Field(2, ge=1, le=100, description="open tickets one kiosk "
                                    "may hold (one citizen at a time, and a hand-over)")
    kiosk_queue_events: RateLimit = Field(default_factory=lambda: RateLimit(
        rate=1.0, burst=6.0), description="a kiosk's ticket requests and cancels")
    desk_queue_events: RateLimit = Field(default_factory=lambda: RateLimit(
        rate=200.0, burst=1000.0), description="a desk's presence, watch, accept, decline, "
        "transfer, for all its clerks (a desk says again who is signed in after a hub restart)")
    kiosk_call_events: RateLimit = Field(default_factory=lambda: RateLimit(
        rate=100.0, burst=400.0), description="a kiosk's call events (SDP, ICE, restart)")
    desk_call_events: RateLimit = Field(default_factory=lambda: RateLimit(
        rate=1000.0, burst=4000.0), description="a desk's call events, for all its clerks")
    refusal_budget: RateLimit = Field(default_factory=lambda: RateLimit(
        rate=2.0, burst=60.0), description="events refused for their rate before the "
                                           "connection is cut as abusive")
    abusive_cooldown_s: float = Field(30.0, ge=0, le=3600, description="a client cut as "
                                      "abusive may not connect again for this long")


class Refusal(Exception):
    """An event the hub refuses; becomes ``hub.error`` for the sender."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


Gate = Callable[[str, str | None, Any], Awaitable[bool]]
"""(Engine.IO session id, namespace, the event's [name, *args]) -> go on with the event."""


class GatedServer(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's server with a gate in front of every event, before a task is
    spawned for it: a client that floods is paced (and cut) while the reader reads its
    frames, not after thousands of queued handler tasks."""

    gate: Gate | None = None

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None,
                            data: Any) -> None:
        if self.gate is None or await self.gate(eio_sid, namespace, data):
            await super()._handle_event(eio_sid, namespace, id, data)


@dataclass
class Admission:
    """One connection's pace: token buckets for its queue events and its call events, and
    a budget of refusals before it counts as abusive and is cut."""

    client_id: str
    queue: policy.TokenBucket
    call: policy.TokenBucket
    refusals: policy.TokenBucket

    def admit(self, event: str, now: float) -> policy.TokenBucket | None:
        """None if the event may go on, else the bucket that refused it."""
        bucket = self.call if event.startswith("call.") else self.queue
        return None if bucket.take(now) else bucket


def _now_dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


class Metrics:
    """Prometheus metrics of one hub process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connected = Gauge("tongban_hub_connected", "connected clients", ["kind"],
                               registry=r)
        self.queue_length = Gauge("tongban_hub_queue_length", "waiting tickets",
                                  ["centre"], registry=r)
        self.wait = Histogram("tongban_hub_wait_seconds", "queue wait until accepted",
                              buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600),
                              registry=r)
        self.call_setups = Counter("tongban_hub_call_setups_total", "calls started",
                                   registry=r)
        self.refusals = Counter("tongban_hub_refusals_total", "refused connections",
                                ["reason"], registry=r)
        self.errors = Counter("tongban_hub_event_errors_total", "refused events", ["code"],
                              registry=r)
        self.relayed = Counter("tongban_hub_relayed_total", "relayed call events", ["event"],
                               registry=r)


class Hub:
    """One hub process."""

    def __init__(self, config: HubConfig, *, directory: Directory | None = None,
                 store: Store | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.directory = directory or load_directory(config.directory)
        self.credentials = CredentialStore(config.credentials)
        self.verifier = TokenVerifier(self.credentials, max_ttl=config.token_max_ttl)
        self.store = store or (RedisStore(config.redis, prefix=config.redis_prefix)
                               if config.redis else MemoryStore())
        self.clock = clock
        self.metrics = Metrics()
        self.routes = CallRoutes(self.store)
        # the relay remembers routes only while Redis tracks the store's call records
        tracked = self.routes if isinstance(self.store, RedisStore) else CallRoutes(self.store)
        prefix = self.store.prefix if isinstance(self.store, RedisStore) else config.redis_prefix
        manager = (HubRedisManager(config.redis, channel=config.redis_channel,
                                   routes=tracked, call_prefix=f"{prefix}call:",
                                   redis_options={"max_connections": 4096})
                   if config.redis else None)
        self.sio = GatedServer(
            async_mode="aiohttp", client_manager=manager, transports=["websocket"],
            ping_interval=config.ping_interval, ping_timeout=config.ping_timeout,
            max_http_buffer_size=p.MAX_EVENT_BYTES, cors_allowed_origins=[],
            logger=False, engineio_logger=False)
        self.app = web.Application()
        self.sio.attach(self.app)
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/metrics", self._metrics)
        self.app.on_startup.append(self._start_sweeper)
        self.app.on_cleanup.append(self._stop_sweeper)
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._local: dict[str, int] = {"kiosk": 0, "desk": 0}
        self._admissions: dict[str, Admission] = {}
        """Each local connection's token buckets, by socket id."""
        self._requests: dict[str, web.BaseRequest] = {}
        """Each local connection's HTTP request (its transport, to cut it)."""
        self._revocation_check_at = 0.0
        self.sio.gate = self._gate
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_unknown)
        handlers: dict[str, Callable[[str, Credential, Any], Awaitable[None]]] = {
            "ticket.request": self._ticket_request, "ticket.cancel": self._ticket_cancel,
            "clerk.presence": self._clerk_presence, "queue.watch": self._queue_watch,
            "ticket.accept": self._ticket_accept, "ticket.decline": self._ticket_decline,
            "ticket.transfer": self._ticket_transfer, "call.offer": self._relay,
            "call.answer": self._relay, "call.ice": self._relay, "call.command": self._relay,
            "call.restart": self._call_restart, "call.end": self._call_end,
        }
        for event, handler in handlers.items():
            self.sio.on(event, self._wrap(event, handler))

    # -- plumbing -----------------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        del request
        ok = await self.store.ping()
        body = {"ok": ok, "process": self.config.process_name,
                "store": "redis" if self.config.redis else "memory",
                "connected": dict(self._local), "protocol": p.PROTOCOL_VERSION}
        return web.json_response(body, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        del request
        return web.Response(body=generate_latest(self.metrics.registry),
                            content_type="text/plain")

    async def _start_sweeper(self, app: web.Application) -> None:
        del app
        self._sweeper = asyncio.create_task(self._sweep())

    async def _stop_sweeper(self, app: web.Application) -> None:
        del app
        if self._sweeper:
            self._sweeper.cancel()
        if isinstance(self.sio.manager, HubRedisManager):
            await self.sio.manager.close()
        await self.store.close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            try:
                if time.monotonic() >= self._revocation_check_at:
                    self._revocation_check_at = time.monotonic() + self.config.revocation_check_s
                    await self._cut_revoked()
                for key in await self.store.grace_claim_due(self.clock()):
                    kind, _, ident = key.partition(":")
                    if kind == "kiosk":
                        if await self._still_gone(ident):
                            await self._kiosk_gone(ident)
                    elif kind == "desk":
                        await self._desk_gone(ident)
                    elif kind == "offer":
                        await self._offer_expired(ident)
            except Exception:  # the sweeper must outlive any one failure
                log.exception("hub.sweep_failed")

    async def _emit(self, event: str, message: p.Message, client_id: str) -> None:
        await self.sio.emit(event, p.dump(message), room=f"client:{client_id}")

    def _wrap(self, event: str, handler: Callable[[str, Credential, Any], Awaitable[None]]
              ) -> Callable[[str, Any], Awaitable[None]]:
        model = p.INBOUND[event]
        allowed = {p.ClientKind.KIOSK: p.KIOSK_EVENTS, p.ClientKind.DESK: p.DESK_EVENTS}

        async def run(sid: str, data: Any = None) -> None:
            session = await self.sio.get_session(sid)
            credential: Credential = session["credential"]
            try:
                if not self._still_valid(credential):
                    log.info("hub.revoked_client_cut", client=credential.id)
                    await self._cut(sid)
                    return
                if event not in allowed[credential.kind]:
                    raise Refusal("forbidden", f"{credential.kind.value} may not send {event}")
                if len(json.dumps(data, default=str)) > p.MAX_EVENT_BYTES:
                    raise Refusal("too_large", f"events are limited to {p.MAX_EVENT_BYTES} bytes")
                try:
                    message = model.model_validate(data)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(x) for x in first["loc"]) or "payload"
                    raise Refusal("invalid", f"{where}: {first['msg']}") from None
                await handler(sid, credential, message)
            except Refusal as exc:
                self.metrics.errors.labels(exc.code).inc()
                log.info("hub.event_refused", socket_event=event, client=credential.id,
                         code=exc.code)
                await self.sio.emit("hub.error", p.dump(p.HubError(
                    code=exc.code, message=str(exc), event=event)), to=sid)
            except Exception:  # a bug must not kill the connection silently: say so, log it
                self.metrics.errors.labels("internal").inc()
                log.exception("hub.event_failed", socket_event=event, client=credential.id)
                await self.sio.emit("hub.error", p.dump(p.HubError(
                    code="internal", message="the hub failed on this event", event=event)),
                    to=sid)

        return run

    def _admission(self, credential: Credential) -> Admission:
        kiosk = credential.kind is p.ClientKind.KIOSK
        queue = self.config.kiosk_queue_events if kiosk else self.config.desk_queue_events
        call = self.config.kiosk_call_events if kiosk else self.config.desk_call_events
        return Admission(client_id=credential.id,
                         queue=policy.TokenBucket(queue.rate, queue.burst),
                         call=policy.TokenBucket(call.rate, call.burst),
                         refusals=policy.TokenBucket(self.config.refusal_budget.rate,
                                                     self.config.refusal_budget.burst))

    async def _gate(self, eio_sid: str, namespace: str | None, data: Any) -> bool:
        """Pace each client's events as they are read: over its rate, an event is refused
        (``rate_limited``, with when to try again) and dropped; a client that keeps sending
        past its refusal budget is abusive, cut, and kept out for a while."""
        sid = self.sio.manager.sid_from_eio_sid(eio_sid, namespace or "/")
        admission = self._admissions.get(sid) if sid else None
        if admission is None:
            return True  # not connected: python-socketio drops it
        event = str(data[0])[:64] if isinstance(data, list) and data else ""
        now = time.monotonic()
        refused = admission.admit(event, now)
        if refused is None:
            return True
        if not admission.refusals.take(now):
            self.metrics.errors.labels("abusive").inc()
            log.warning("hub.abusive_client_cut", client=admission.client_id,
                        socket_event=event)
            if self.config.abusive_cooldown_s:
                await self.store.mark(f"cut:{admission.client_id}",
                                      self.config.abusive_cooldown_s)
            await self._cut(sid)
            return False
        self.metrics.errors.labels("rate_limited").inc()
        await self.sio.emit("hub.error", p.dump(p.HubError(
            code="rate_limited", message="too many events: wait before sending this again",
            event=event, retry_after_s=round(refused.retry_after(), 3))), to=sid)
        return False

    async def _cut(self, sid: str) -> None:
        """Disconnect a local client and close its connection too: a socket.io (and an
        Engine.IO) disconnect leaves closing the WebSocket to the client, and the server keeps
        reading what a hostile one goes on sending."""
        request = self._requests.get(sid)
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        await self.sio.disconnect(sid)
        if eio_sid is not None:
            await self.sio.eio.disconnect(eio_sid)
        if request is not None and request.transport is not None:
            request.transport.close()

    def _still_valid(self, credential: Credential) -> bool:
        """The client's credential is still the one it connected with, and not revoked (the
        credentials file is re-read when it changes)."""
        current = self.credentials.get(credential.id)
        return (current is not None and current.revoked_at is None
                and current.public_key == credential.public_key)

    async def _cut_revoked(self) -> None:
        """Cut the live connections of revoked clients, wherever they are: with Redis the
        socket may be on another process, and python-socketio's manager passes the
        disconnect on. Every process does this, so a process that has not seen the change to
        its credentials file yet is covered by one that has."""
        revoked = [c for c in self.credentials.all() if c.revoked_at is not None]
        records = await self.store.get_many(ClientRecord, [f"client:{c.id}" for c in revoked])
        for credential, record in zip(revoked, records, strict=True):
            if record is not None and record.connected and record.sid:
                log.info("hub.revoked_client_cut", client=credential.id)
                await self.sio.disconnect(record.sid)
                record.connected, record.disconnected_at = False, self.clock()
                await self.store.save(record)
                await self._revoked_gone(credential)

    async def _revoked_gone(self, credential: Credential) -> None:
        """A revoked client gets no grace: its tickets close (kiosk) or go back to the
        queue (desk) at once."""
        await self.store.grace_remove(f"{credential.kind.value}:{credential.id}")
        if credential.kind is p.ClientKind.KIOSK:
            await self._kiosk_gone(credential.id)
        else:
            await self._desk_gone(credential.id)

    async def _on_unknown(self, event: str, sid: str, data: Any = None) -> None:
        del data
        self.metrics.errors.labels("unknown_event").inc()
        await self.sio.emit("hub.error", p.dump(p.HubError(
            code="unknown_event", message=f"no such event: {event[:64]}", event=event[:64])),
            to=sid)

    # -- connect, disconnect, resume ----------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        auth = auth if isinstance(auth, dict) else {}
        try:
            credential = await self.verifier.verify(auth.get("token"), self.store.nonce_unused,
                                                    now=self.clock())
            if await self.store.marked(f"cut:{credential.id}"):
                raise AuthError("cooling_down", "this client was cut for flooding the hub; "
                                "it may connect again later")
        except AuthError as exc:
            self.metrics.refusals.labels(exc.code).inc()
            log.info("hub.connect_refused", reason=exc.code)
            raise socketio.exceptions.ConnectionRefusedError(
                str(exc), {"code": exc.code, "message": str(exc)}) from None
        await self.sio.save_session(sid, {"credential": credential})
        self._admissions[sid] = self._admission(credential)
        request = environ.get("aiohttp.request")
        if isinstance(request, web.BaseRequest):
            self._requests[sid] = request
        await self.sio.enter_room(sid, f"client:{credential.id}")
        self._local[credential.kind.value] += 1
        self.metrics.connected.labels(credential.kind.value).inc()
        # resume and welcome after this handler returns: an event sent before the connect
        # acknowledgement would reach the client before it counts as connected
        asyncio.get_running_loop().call_soon(self._spawn, self._after_connect(
            sid, credential, auth.get("resume")))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("hub.task_failed", error=repr(task.exception()))

    async def _after_connect(self, sid: str, credential: Credential, resume: object) -> None:
        """Resume or start afresh (after connect returned, so that the client can receive)."""
        previous = await self.store.client(credential.id)
        resumed = bool(previous and isinstance(resume, str) and resume
                       and secrets.compare_digest(resume, previous.resume_token))
        if previous and previous.connected and previous.sid and previous.sid != sid:
            await self.sio.disconnect(previous.sid)  # the newest connection of a client wins
        record = ClientRecord(id=credential.id, kind=credential.kind, sid=sid, connected=True,
                              resume_token=secrets.token_urlsafe(24),
                              clerks=previous.clerks if (previous and resumed) else [])
        await self.store.save(record)
        kiosk = credential.kind is p.ClientKind.KIOSK
        await self.store.grace_remove(f"{'kiosk' if kiosk else 'desk'}:{credential.id}")
        if previous and not resumed:
            # a fresh session of this client: what the old one held is closed (kiosk) or
            # handed back to the queue (desk) at once
            await (self._kiosk_gone(credential.id) if kiosk else self._desk_gone(credential.id))
        welcome = p.Welcome(client_id=credential.id, kind=credential.kind,
                            resume_token=record.resume_token, resumed=resumed)
        if resumed:
            tickets, calls = await self._holdings(credential)
            welcome = welcome.model_copy(update={"tickets": tickets, "calls": calls})
            for call in calls:
                other = await self._other_party(call.call_id, credential.id)
                if other:
                    await self._emit("call.peer_back", p.CallPeerBack(call_id=call.call_id),
                                     other)
        await self.sio.emit("hub.welcome", p.dump(welcome), to=sid)
        log.info("hub.connected", client=credential.id, kind=credential.kind.value,
                 resumed=resumed, process=self.config.process_name)
        # updates go only on change, and one may have been lost while the kiosk was away:
        # its waiting tickets are told their place again
        waiting = [t for t in welcome.tickets
                   if t.state in (p.TicketState.WAITING, p.TicketState.OFFERED)]
        for update in waiting:
            await self.store.tell(update.centre, {}, [update.ticket_id])
        for centre in sorted({t.centre for t in waiting}):
            await self._queue_changed(centre)

    async def _holdings(self, credential: Credential
                        ) -> tuple[list[p.TicketUpdate], list[p.CallStart]]:
        tickets: list[p.TicketUpdate] = []
        calls: list[p.CallStart] = []
        if credential.kind is p.ClientKind.KIOSK:
            for ticket_id in await self.store.set_members(f"kiosk_tickets:{credential.id}"):
                ticket = await self.store.ticket(ticket_id)
                if ticket is None or ticket.state is p.TicketState.CLOSED:
                    continue
                tickets.append(await self._update_for(ticket))
                if ticket.call_id:
                    call = await self.store.call(ticket.call_id)
                    if call:
                        calls.append(await self._call_start(call, ticket, "offerer"))
        else:
            record = await self.store.client(credential.id)
            for clerk_id in record.clerks if record else []:
                clerk = await self.store.clerk(clerk_key(credential.id, clerk_id))
                if clerk and clerk.call_id:
                    call = await self.store.call(clerk.call_id)
                    ticket = await self.store.ticket(call.ticket_id) if call else None
                    if call and ticket:
                        calls.append(await self._call_start(call, ticket, "answerer"))
        return tickets, calls

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        del reason
        try:
            session = await self.sio.get_session(sid)
        except KeyError:
            return
        credential: Credential | None = session.get("credential")
        if credential is None:
            return
        self._local[credential.kind.value] -= 1
        self.metrics.connected.labels(credential.kind.value).dec()
        self._admissions.pop(sid, None)
        self._requests.pop(sid, None)
        record = await self.store.client(credential.id)
        if record is None or record.sid != sid:
            return  # replaced by a newer connection
        if not self._still_valid(credential):
            record.connected, record.disconnected_at = False, self.clock()
            await self.store.save(record)
            await self._revoked_gone(credential)
            log.info("hub.disconnected", client=credential.id, kind=credential.kind.value,
                     revoked=True)
            return
        record.connected, record.disconnected_at = False, self.clock()
        await self.store.save(record)
        grace = self.config.grace_seconds
        kiosk = credential.kind is p.ClientKind.KIOSK
        await self.store.grace_add(f"{'kiosk' if kiosk else 'desk'}:{credential.id}",
                                   self.clock() + grace)
        tickets, calls = await self._holdings(credential)
        del tickets
        for call in calls:  # the other party hears at once
            other = await self._other_party(call.call_id, credential.id)
            if other:
                await self._emit("call.peer_lost",
                                 p.CallPeerLost(call_id=call.call_id, grace_s=math.ceil(grace)),
                                 other)
        log.info("hub.disconnected", client=credential.id, kind=credential.kind.value)

    async def _still_gone(self, client_id: str) -> bool:
        record = await self.store.client(client_id)
        return record is None or not record.connected

    async def _kiosk_gone(self, kiosk_id: str) -> None:
        """A kiosk's grace expired (or it restarted): its tickets close."""
        for ticket_id in await self.store.set_members(f"kiosk_tickets:{kiosk_id}"):
            ticket = await self.store.ticket(ticket_id)
            if ticket and ticket.state is not p.TicketState.CLOSED:
                async with self.store.lock(f"centre:{ticket.centre}"):
                    ticket = await self.store.ticket(ticket_id)
                    if ticket and ticket.state is not p.TicketState.CLOSED:
                        await self._close(ticket, p.CloseReason.KIOSK_GONE, notify_kiosk=False)
                await self._queue_changed(ticket.centre if ticket else "")

    async def _desk_gone(self, desk_id: str) -> None:
        """A desk's grace expired (or it restarted): its clerks' tickets go back to the front."""
        if not await self._still_gone(desk_id):
            return
        record = await self.store.client(desk_id)
        centres: set[str] = set()
        for clerk_id in record.clerks if record else []:
            clerk = await self.store.clerk(clerk_key(desk_id, clerk_id))
            if clerk is None:
                continue
            held = clerk.offered_ticket
            if clerk.call_id:
                call = await self.store.call(clerk.call_id)
                held = call.ticket_id if call else held
            ticket = await self.store.ticket(held) if held else None
            lock = ticket.centre if ticket else next(iter(sorted(clerk.centres)), "")
            async with self.store.lock(f"centre:{lock}"):
                clerk = await self.store.clerk(clerk_key(desk_id, clerk_id))
                if clerk is None:
                    continue
                ticket_id = clerk.offered_ticket
                if clerk.call_id:
                    call = await self.store.call(clerk.call_id)
                    ticket_id = call.ticket_id if call else ticket_id
                    if call:
                        await self._emit("call.ended", p.CallEnded(call_id=call.id,
                                                                   reason=p.CallEndReason.CLERK_GONE),
                                         call.kiosk_id)
                        await self.store.delete(f"call:{call.id}")
                if ticket_id:
                    ticket = await self.store.ticket(ticket_id)
                    if ticket and ticket.state is not p.TicketState.CLOSED:
                        await self._requeue_front(ticket)
                        centres.add(ticket.centre)
                await self._remove_clerk(clerk)
            centres.update(clerk.centres)
        if record:
            record.clerks = []
            await self.store.save(record)
        for centre in centres:
            await self._route(centre)
            await self._queue_changed(centre)

    async def _offer_expired(self, ticket_id: str) -> None:
        ticket = await self.store.ticket(ticket_id)
        if ticket and ticket.state is p.TicketState.OFFERED and ticket.offered_to:
            clerk_key_ = ticket.offered_to
            centre = ticket.centre
            async with self.store.lock(f"centre:{centre}"):
                ticket = await self.store.ticket(ticket_id)
                if ticket and ticket.state is p.TicketState.OFFERED:
                    await self.store.update_clerk(clerk_key_, _lapsed)
                    await self._requeue_front(ticket)
            await self._route(centre)
            await self._queue_changed(centre)

    # -- queue helpers ------------------------------------------------------------------------

    async def _requeue_front(self, ticket: Ticket) -> None:
        """Back to the front of its centre's queue (nothing is lost)."""
        queue = await self.store.queue_ids(ticket.centre)
        front = min((s for _, s in queue), default=ticket.enqueued_at)
        ticket.state = p.TicketState.WAITING
        ticket.offered_to = ticket.clerk_id = ticket.desk_id = ticket.call_id = None
        await self.store.save(ticket)
        await self.store.queue_add(ticket.centre, ticket.id, min(front - 1, ticket.enqueued_at))

    async def _remove_clerk(self, clerk: Clerk) -> None:
        await self.store.delete(f"clerk:{clerk.key}")
        for centre in clerk.centres:
            await self.store.set_remove(f"centre_clerks:{centre}", clerk.key)

    async def _clerks(self, centre: str) -> list[Clerk]:
        keys = await self.store.set_members(f"centre_clerks:{centre}")
        return [c for c in await self.store.get_many(Clerk, [f"clerk:{k}" for k in keys])
                if c and centre in c.centres]

    async def _waiting(self, centre: str) -> list[Ticket]:
        ids = [ticket_id for ticket_id, _ in await self.store.queue_ids(centre)]
        tickets = await self.store.get_many(Ticket, [f"ticket:{i}" for i in ids])
        return [t for t in tickets
                if t and t.state in (p.TicketState.WAITING, p.TicketState.OFFERED)]

    async def _update_for(self, ticket: Ticket, position: int | None = None,
                          wait: int | None = None) -> p.TicketUpdate:
        return p.TicketUpdate(ticket_id=ticket.id, case_id=ticket.case_id, centre=ticket.centre,
                              matter=ticket.matter, state=ticket.state, position=position,
                              expected_wait_s=wait, reason=ticket.closed_reason)

    def _directory_service_s(self, matter: str) -> float:
        found = self.directory.matter(matter)
        return (found.avg_service_minutes if found else 8.0) * 60

    async def _learn(self, ticket: Ticket, seconds: float) -> None:
        """A completed call teaches the centre's service time of its matter."""
        key = f"service_time:{ticket.centre}:{ticket.matter}"
        known = await self.store.get(ServiceTime, key)
        learned = policy.learn_service_time(known.seconds if known else None, seconds,
                                            self._directory_service_s(ticket.matter))
        bound = self._directory_service_s(ticket.matter) * policy.MAX_LEARNED_FACTOR
        recent = [*(known.recent if known else []), round(min(seconds, bound), 1)]
        await self.store.put(key, ServiceTime(seconds=learned,
                                              calls=(known.calls if known else 0) + 1,
                                              recent=recent[-policy.RECENT_CALLS:]))

    async def _service_times(self, centre: str, matters: set[str]
                             ) -> tuple[dict[str, float], dict[str, list[float]]]:
        """Each matter's service time at the centre, and its recent call durations."""
        ordered = sorted(matters)
        known = await self.store.get_many(ServiceTime, [f"service_time:{centre}:{m}"
                                                        for m in ordered])
        pairs = list(zip(ordered, known, strict=True))
        return ({m: (k.seconds if k else self._directory_service_s(m)) for m, k in pairs},
                {m: k.recent for m, k in pairs if k})

    async def _queue_changed(self, centre: str) -> None:
        """Tell every waiting kiosk its position and wait, and the centre's desks the queue."""
        if not centre:
            return
        waiting = await self._waiting(centre)
        clerks = await self._clerks(centre)
        now = self.clock()
        calls = await self.store.get_many(Call, [f"call:{c.call_id}" for c in clerks
                                                 if c.call_id])
        call_tickets = await self.store.get_many(Ticket, [f"ticket:{c.ticket_id}"
                                                          for c in calls if c])
        matter_of = {t.id: t.matter for t in call_tickets if t}
        started = {c.clerk_key: (c.started_at, matter_of.get(c.ticket_id)) for c in calls if c}
        loads = [policy.ClerkLoad(clerk_id=c.key, matters=frozenset(c.centres[centre]),
                                  available=c.available, call_started_at=(
                                      started[c.key][0] if c.key in started else None),
                                  call_matter=started[c.key][1] if c.key in started else None)
                 for c in clerks]
        service, recent = await self._service_times(
            centre, {t.matter for t in waiting} | {m for _, m in started.values() if m})
        waits = policy.expected_waits(
            [policy.WaitingTicket(t.id, t.matter, t.offered_to) for t in waiting], loads,
            service, now, recent=recent)
        # only the tickets whose state, position or expected wait as the citizen sees it
        # changed hear of it: a ticket joining the back moves nobody ahead of it
        told = await self.store.told(centre)
        changed: dict[str, str] = {}
        position_by_matter: dict[str, int] = {}
        for ticket in waiting:
            position_by_matter[ticket.matter] = position_by_matter.get(ticket.matter, 0) + 1
            position = position_by_matter[ticket.matter]
            wait = waits.get(ticket.id)
            seen = p.shown(ticket.state, position, wait)
            if told.get(ticket.id) != seen:
                changed[ticket.id] = seen
                await self._emit("ticket.update", await self._update_for(
                    ticket, position, wait), ticket.kiosk_id)
        present = {t.id for t in waiting}
        gone = [ticket_id for ticket_id in told if ticket_id not in present]
        if changed or gone:
            await self.store.tell(centre, changed, gone)
        centre_info = self.directory.centre(centre)
        snapshot = p.QueueSnapshot(
            centre=centre, routing=centre_info.routing if centre_info else "pick",
            items=[p.QueueItem(ticket_id=t.id, matter=t.matter, site=t.site,
                               waiting_s=int(now - t.created_at), state=t.state,
                               offered_to=t.offered_to.partition("/")[2] or None
                               if t.offered_to else None,
                               offered_desk=t.offered_to.partition("/")[0] or None
                               if t.offered_to else None) for t in waiting])
        await self.sio.emit("queue.snapshot", p.dump(snapshot), room=f"centre:{centre}")
        self.metrics.queue_length.labels(centre).set(len(waiting))

    async def _route(self, centre: str) -> None:
        """Automatic routing: the available clerk idle longest takes the longest-waiting
        ticket they have the skill for (as an offer the clerk accepts)."""
        info = self.directory.centre(centre)
        if info is None or info.routing != "auto":
            return
        async with self.store.lock(f"centre:{centre}"):
            candidates = [c for c in await self._clerks(centre)
                          if c.available and not c.call_id and not c.offered_ticket]
            desk_ids = sorted({c.desk_id for c in candidates})
            records = await self.store.get_many(ClientRecord,
                                                [f"client:{d}" for d in desk_ids])
            online = {d for d, r in zip(desk_ids, records, strict=True) if r and r.connected}
            clerks = sorted((c for c in candidates if c.desk_id in online),
                            key=lambda c: c.idle_since)
            waiting = [t for t in await self._waiting(centre)
                       if t.state is p.TicketState.WAITING]
            offers: list[tuple[Clerk, Ticket]] = []
            for clerk in clerks:
                ticket = next((t for t in waiting if clerk.handles(centre, t.matter)), None)
                if ticket is None:
                    continue
                if await self.store.update_clerk(clerk.key, _offer(ticket.id, available=True)
                                                 ) is None:
                    continue  # taken (or away) meanwhile, at another of the clerk's centres
                waiting.remove(ticket)
                ticket.state, ticket.offered_to = p.TicketState.OFFERED, clerk.key
                await self.store.save(ticket)
                await self.store.grace_add(f"offer:{ticket.id}",
                                           self.clock() + self.config.offer_seconds)
                offers.append((clerk, ticket))
        for clerk, ticket in offers:
            await self._emit("ticket.offered", p.TicketOffered(
                ticket_id=ticket.id, clerk_id=clerk.id, matter=ticket.matter, site=ticket.site),
                clerk.desk_id)

    # -- kiosk events -------------------------------------------------------------------------

    async def _ticket_request(self, sid: str, kiosk: Credential, m: p.TicketRequest) -> None:
        centre = self.directory.centre(m.centre)
        matter = self.directory.matter(m.matter)
        if centre is None or matter is None or m.matter not in centre.matters:
            await self.sio.emit("service.closed", p.dump(p.ServiceClosed(
                centre=m.centre, matter=m.matter, reason="unknown_matter")), to=sid)
            return
        now = self.clock()
        if not centre.is_open(_now_dt(now)):
            await self.sio.emit("service.closed", p.dump(p.ServiceClosed(
                centre=m.centre, matter=m.matter, reason="outside_hours",
                next_opening=centre.next_opening(_now_dt(now)))), to=sid)
            return
        serving = [c for c in await self._clerks(m.centre) if c.handles(m.centre, m.matter)]
        if not serving:
            await self.sio.emit("service.closed", p.dump(p.ServiceClosed(
                centre=m.centre, matter=m.matter, reason="no_clerk")), to=sid)
            return
        ticket = Ticket(id=secrets.token_urlsafe(12), case_id=m.case_id, kiosk_id=kiosk.id,
                        site=kiosk.site or "", centre=m.centre, matter=m.matter,
                        created_at=now, enqueued_at=now)
        # the kiosk's open tickets are checked and the new one added under the kiosk's lock:
        # requests sent at once cannot both pass the check
        async with self.store.lock(f"kiosk:{kiosk.id}"):
            held = await self.store.get_many(Ticket, [
                f"ticket:{t}" for t in await self.store.set_members(f"kiosk_tickets:{kiosk.id}")])
            open_tickets = [t for t in held if t and t.state is not p.TicketState.CLOSED]
            if any(t.case_id == m.case_id for t in open_tickets):
                raise Refusal("conflict", "this case already has an open ticket")
            if len(open_tickets) >= self.config.kiosk_open_tickets:
                raise Refusal("too_many_tickets", f"a kiosk holds at most "
                              f"{self.config.kiosk_open_tickets} open tickets: cancel one first")
            async with self.store.lock(f"centre:{m.centre}"):
                await self.store.save(ticket)
                await self.store.set_add(f"kiosk_tickets:{kiosk.id}", ticket.id)
                await self.store.queue_add(m.centre, ticket.id, now)
        log.info("hub.ticket_created", ticket=ticket.id, centre=m.centre, matter=m.matter)
        await self._route(m.centre)
        await self._queue_changed(m.centre)

    async def _own_ticket(self, kiosk: Credential, ticket_id: str) -> Ticket:
        ticket = await self.store.ticket(ticket_id)
        if ticket is None or ticket.kiosk_id != kiosk.id:
            raise Refusal("not_found", "no such ticket of yours")
        return ticket

    async def _ticket_cancel(self, sid: str, kiosk: Credential, m: p.TicketCancel) -> None:
        del sid
        ticket = await self._own_ticket(kiosk, m.ticket_id)
        async with self.store.lock(f"centre:{ticket.centre}"):
            ticket = await self._own_ticket(kiosk, m.ticket_id)
            if ticket.state is p.TicketState.CLOSED:
                return
            await self._close(ticket, p.CloseReason.CANCELLED)
        await self._route(ticket.centre)
        await self._queue_changed(ticket.centre)

    async def _close(self, ticket: Ticket, reason: p.CloseReason, *,
                     notify_kiosk: bool = True) -> None:
        """Close a ticket (caller holds the centre lock): end its call, free its clerk."""
        if ticket.call_id:
            call = await self.store.call(ticket.call_id)
            if call:
                ended = p.CallEnded(call_id=call.id, reason=p.CallEndReason(reason.value))
                await self._emit("call.ended", ended, call.desk_id)
                await self.store.delete(f"call:{call.id}")
        for clerk_id in {ticket.clerk_id, ticket.offered_to} - {None}:
            await self.store.update_clerk(str(clerk_id), self._freed)
        await self.store.grace_remove(f"offer:{ticket.id}")
        await self.store.queue_remove(ticket.centre, ticket.id)
        ticket.state, ticket.closed_reason = p.TicketState.CLOSED, reason
        ticket.call_id = None
        await self.store.save(ticket)
        await self.store.set_remove(f"kiosk_tickets:{ticket.kiosk_id}", ticket.id)
        if notify_kiosk:
            await self._emit("ticket.update", await self._update_for(ticket), ticket.kiosk_id)

    # -- desk events --------------------------------------------------------------------------

    def _check_centre(self, desk: Credential, centre: str) -> None:
        if centre not in desk.centres:
            raise Refusal("forbidden", f"this desk does not serve centre {centre}")

    async def _desk_clerk(self, desk: Credential, clerk_id: str) -> Clerk:
        clerk = await self.store.clerk(clerk_key(desk.id, clerk_id))
        if clerk is None:
            raise Refusal("not_found", "no such clerk signed in through this desk")
        return clerk

    async def _clerk_presence(self, sid: str, desk: Credential, m: p.ClerkPresence) -> None:
        """A clerk of this desk (ids are the desk's own) signs in for one centre, changes
        availability, or signs out of it; the clerk's record keeps every centre they are
        signed in for, each with its matters."""
        del sid
        self._check_centre(desk, m.centre)
        key = clerk_key(desk.id, m.clerk_id)
        async with self.store.lock(f"centre:{m.centre}"), self.store.lock(f"clerk:{key}"):
            existing = await self.store.clerk(key)
            record = await self.store.client(desk.id)
            if not m.signed_in:
                if existing and m.centre in existing.centres:
                    held = [t for t in (existing.offered_ticket, existing.call_id) if t]
                    ticket = await self._held_ticket(existing)
                    if held and (ticket is None or ticket.centre == m.centre):
                        raise Refusal("conflict", "end or hand back the current ticket first")
                    await self.store.set_remove(f"centre_clerks:{m.centre}", key)
                    del existing.centres[m.centre]
                    if existing.centres:
                        await self.store.save(existing)
                    else:
                        await self.store.delete(f"clerk:{key}")
                if record and m.clerk_id in record.clerks and \
                        not (existing and existing.centres):
                    record.clerks.remove(m.clerk_id)
                    await self.store.save(record)
            else:
                known = set(self.directory.centre(m.centre).matters)  # type: ignore[union-attr]
                centres = dict(existing.centres) if existing else {}
                centres[m.centre] = [x for x in m.matters if x in known]
                clerk = Clerk(id=m.clerk_id, desk_id=desk.id, centres=centres,
                              available=m.available,
                              idle_since=existing.idle_since if existing else self.clock(),
                              offered_ticket=existing.offered_ticket if existing else None,
                              call_id=existing.call_id if existing else None)
                if existing and not existing.available and m.available:
                    clerk.idle_since = self.clock()
                await self.store.save(clerk)
                await self.store.set_add(f"centre_clerks:{m.centre}", key)
                if record and m.clerk_id not in record.clerks:
                    record.clerks.append(m.clerk_id)
                    await self.store.save(record)
        await self._route(m.centre)
        await self._queue_changed(m.centre)

    def _freed(self, clerk: Clerk) -> None:
        """The clerk's call or offer is over: free, at the back of the rotation."""
        clerk.call_id = clerk.offered_ticket = None
        clerk.idle_since = self.clock()

    async def _held_ticket(self, clerk: Clerk) -> Ticket | None:
        """The ticket a clerk is offered or in a call with."""
        if clerk.call_id:
            call = await self.store.call(clerk.call_id)
            return await self.store.ticket(call.ticket_id) if call else None
        return await self.store.ticket(clerk.offered_ticket) if clerk.offered_ticket else None

    async def _queue_watch(self, sid: str, desk: Credential, m: p.QueueWatch) -> None:
        self._check_centre(desk, m.centre)
        await self.sio.enter_room(sid, f"centre:{m.centre}")
        await self._queue_changed(m.centre)

    async def _ticket_accept(self, sid: str, desk: Credential, m: p.TicketAccept) -> None:
        del sid
        clerk = await self._desk_clerk(desk, m.clerk_id)
        ticket = await self.store.ticket(m.ticket_id)
        if ticket is None:
            raise Refusal("not_found", "no such ticket")
        self._check_centre(desk, ticket.centre)
        async with self.store.lock(f"centre:{ticket.centre}"):
            ticket = await self.store.ticket(m.ticket_id)
            clerk = await self._desk_clerk(desk, m.clerk_id)
            if ticket is None or ticket.state is p.TicketState.CLOSED or \
                    ticket.state is p.TicketState.IN_CALL:
                raise Refusal("conflict", "this ticket is no longer waiting")
            if ticket.centre not in clerk.centres:
                raise Refusal("forbidden", "this clerk is not signed in for this ticket's centre")
            if ticket.state is p.TicketState.OFFERED and ticket.offered_to != clerk.key:
                raise Refusal("conflict", "this ticket is offered to another clerk")
            if not clerk.handles(ticket.centre, ticket.matter):
                raise Refusal("forbidden", "this clerk does not handle this matter")
            if clerk.call_id:
                raise Refusal("conflict", "this clerk is already in a call")
            if clerk.offered_ticket and clerk.offered_ticket != ticket.id:
                other = await self.store.ticket(clerk.offered_ticket)
                if other and other.state is p.TicketState.OFFERED:
                    await self._requeue_front(other)
            call = Call(id=secrets.token_urlsafe(12), ticket_id=ticket.id,
                        kiosk_id=ticket.kiosk_id, desk_id=desk.id, clerk_id=clerk.id,
                        started_at=self.clock())
            self.metrics.wait.observe(max(0.0, self.clock() - ticket.created_at))
            ticket.state, ticket.offered_to = p.TicketState.IN_CALL, None
            ticket.clerk_id, ticket.desk_id, ticket.call_id = clerk.key, desk.id, call.id
            if await self.store.update_clerk(clerk.key, _in_call(call.id, ticket.id)) is None:
                raise Refusal("conflict", "this clerk took another citizen meanwhile")
            await self.store.queue_remove(ticket.centre, ticket.id)
            await self.store.grace_remove(f"offer:{ticket.id}")
            await self.store.save(call)
            await self.store.save(ticket)
        await self._start_call(call, ticket)
        await self._route(ticket.centre)
        await self._queue_changed(ticket.centre)

    async def _call_start(self, call: Call, ticket: Ticket, role: str) -> p.CallStart:
        if role == "offerer":
            site = self.directory.site(ticket.site)
            party = call.kiosk_id
        else:
            centre = self.directory.centre(ticket.centre)
            site = self.directory.site(centre.site if centre else None)
            party = call.desk_id
        servers = [] if site is None else ice_servers_for(
            site.stun, site.turn, site.turn_secret(), party, site.turn_ttl)
        return p.CallStart(call_id=call.id, ticket_id=ticket.id, case_id=ticket.case_id,
                           role="offerer" if role == "offerer" else "answerer",
                           clerk_id=call.clerk_id, ice_servers=servers)

    async def _start_call(self, call: Call, ticket: Ticket) -> None:
        self.metrics.call_setups.inc()
        await self._emit("ticket.update", await self._update_for(ticket), ticket.kiosk_id)
        await self._emit("call.start", await self._call_start(call, ticket, "offerer"),
                         call.kiosk_id)
        await self._emit("call.start", await self._call_start(call, ticket, "answerer"),
                         call.desk_id)
        log.info("hub.call_started", call=call.id, ticket=ticket.id)

    async def _held_by(self, desk: Credential, clerk_id: str, ticket_id: str) -> Ticket:
        clerk = await self._desk_clerk(desk, clerk_id)
        ticket = await self.store.ticket(ticket_id)
        if ticket is None or clerk.key not in (ticket.offered_to, ticket.clerk_id):
            raise Refusal("not_found", "this clerk holds no such ticket")
        if ticket.centre not in clerk.centres:
            raise Refusal("forbidden", "this clerk is not signed in for this ticket's centre")
        return ticket

    async def _ticket_decline(self, sid: str, desk: Credential, m: p.TicketDecline) -> None:
        del sid
        ticket = await self._held_by(desk, m.clerk_id, m.ticket_id)
        async with self.store.lock(f"centre:{ticket.centre}"):
            ticket = await self._held_by(desk, m.clerk_id, m.ticket_id)
            await self._hand_back(ticket, p.CallEndReason.DECLINED)
        await self._route(ticket.centre)
        await self._queue_changed(ticket.centre)

    async def _hand_back(self, ticket: Ticket, reason: p.CallEndReason) -> None:
        """End the ticket's call (if any), free its clerk, and put it at the queue's front."""
        if ticket.call_id:
            call = await self.store.call(ticket.call_id)
            if call:
                for party in (call.kiosk_id, call.desk_id):
                    await self._emit("call.ended", p.CallEnded(call_id=call.id, reason=reason),
                                     party)
                await self.store.delete(f"call:{call.id}")
        for clerk_id in {ticket.clerk_id, ticket.offered_to} - {None}:
            await self.store.update_clerk(str(clerk_id), self._freed)  # to the back of the rotation
        await self.store.grace_remove(f"offer:{ticket.id}")
        await self._requeue_front(ticket)

    async def _ticket_transfer(self, sid: str, desk: Credential, m: p.TicketTransfer) -> None:
        del sid
        ticket = await self._held_by(desk, m.clerk_id, m.ticket_id)
        origin = ticket.centre
        async with self.store.lock(f"centre:{origin}"):
            ticket = await self._held_by(desk, m.clerk_id, m.ticket_id)
            if m.to_centre is not None:
                target = self.directory.centre(m.to_centre)
                if target is None or ticket.matter not in target.matters:
                    raise Refusal("not_found", "that centre does not handle this matter")
                if not target.is_open(_now_dt(self.clock())):
                    raise Refusal("closed", "that centre is closed now")
                if not any(c.handles(m.to_centre, ticket.matter)
                           for c in await self._clerks(m.to_centre)):
                    raise Refusal("closed", "nobody at that centre handles this matter now")
                await self._hand_back(ticket, p.CallEndReason.TRANSFERRED)
                await self.store.queue_remove(origin, ticket.id)
                ticket.centre = m.to_centre
                await self.store.save(ticket)
                await self.store.queue_add(m.to_centre, ticket.id, ticket.enqueued_at)
            else:
                target_clerk = await self.store.clerk(clerk_key(m.to_desk or desk.id,
                                                                str(m.to_clerk)))
                # the target's own centres: where they take this matter (their ticket's own
                # centre first)
                where = sorted((c for c in (target_clerk.centres if target_clerk else {})
                                if target_clerk and target_clerk.handles(c, ticket.matter)),
                               key=lambda c: (c != origin, c))
                if target_clerk is None or not where or \
                        await self.store.update_clerk(target_clerk.key,
                                                      _offer(ticket.id)) is None:
                    raise Refusal("conflict", "that clerk cannot take this ticket now")
                await self._hand_back(ticket, p.CallEndReason.TRANSFERRED)
                ticket = await self.store.ticket(ticket.id) or ticket
                await self.store.queue_remove(origin, ticket.id)
                ticket.centre = where[0]
                ticket.state, ticket.offered_to = p.TicketState.OFFERED, target_clerk.key
                await self.store.save(ticket)
                await self.store.queue_add(ticket.centre, ticket.id, ticket.enqueued_at)
                await self.store.grace_add(f"offer:{ticket.id}",
                                           self.clock() + self.config.offer_seconds)
        if m.to_clerk is not None:
            clerk = await self.store.clerk(clerk_key(m.to_desk or desk.id, m.to_clerk))
            if clerk:
                await self._emit("ticket.offered", p.TicketOffered(
                    ticket_id=ticket.id, clerk_id=clerk.id, matter=ticket.matter,
                    site=ticket.site), clerk.desk_id)
        for centre in {origin, ticket.centre}:
            await self._route(centre)
            await self._queue_changed(centre)

    # -- calls --------------------------------------------------------------------------------

    async def _party_call(self, credential: Credential, call_id: str) -> Call:
        call = await self.store.call(call_id)
        if call is None or credential.id not in (call.kiosk_id, call.desk_id):
            raise Refusal("forbidden", "not a party to this call")
        return call

    async def _other_party(self, call_id: str, client_id: str) -> str | None:
        call = await self.store.call(call_id)
        if call is None:
            return None
        return call.desk_id if client_id == call.kiosk_id else call.kiosk_id

    async def _relay(self, sid: str, sender: Credential, m: Any) -> None:
        """Pass a call event to the call's other party, in the order the sender sent them:
        from the remembered route without waiting, or else in turn behind the call's
        relays that wait for the store."""
        del sid
        route = self.routes.cached(m.call_id)
        if route is not None:
            await self._relay_on(route, sender, m)
            return
        async with self.routes.ordered(m.call_id):
            await self._relay_on(await self.routes.resolve(m.call_id), sender, m)

    async def _relay_on(self, route: Route | None, sender: Credential, m: Any) -> None:
        other = route.other(sender.id) if route else None
        if other is None:
            raise Refusal("forbidden", "not a party to this call")
        event = RELAYED_EVENTS[type(m)]
        self.metrics.relayed.labels(event).inc()
        await self._emit(event, m, other)

    async def _call_restart(self, sid: str, sender: Credential, m: p.CallRestart) -> None:
        del sid
        call = await self._party_call(sender, m.call_id)
        ticket = await self.store.ticket(call.ticket_id)
        if ticket is None:
            raise Refusal("not_found", "the call's ticket is gone")
        async with self.store.lock(f"centre:{ticket.centre}"):
            fresh = Call(id=secrets.token_urlsafe(12), ticket_id=ticket.id,
                         kiosk_id=call.kiosk_id, desk_id=call.desk_id, clerk_id=call.clerk_id,
                         started_at=self.clock())
            await self.store.delete(f"call:{call.id}")
            await self.store.save(fresh)
            ticket.call_id = fresh.id
            await self.store.save(ticket)
            await self.store.update_clerk(call.clerk_key, _calling(fresh.id))
        for party in (call.kiosk_id, call.desk_id):
            await self._emit("call.ended", p.CallEnded(
                call_id=call.id, reason=p.CallEndReason.RESTARTED), party)
        await self._start_call(fresh, ticket)

    async def _call_end(self, sid: str, sender: Credential, m: p.CallEnd) -> None:
        del sid
        call = await self._party_call(sender, m.call_id)
        ticket = await self.store.ticket(call.ticket_id)
        if ticket is None:
            await self.store.delete(f"call:{call.id}")
            return
        async with self.store.lock(f"centre:{ticket.centre}"):
            ticket = await self.store.ticket(call.ticket_id)
            if ticket is None:
                return
            other = call.desk_id if sender.id == call.kiosk_id else call.kiosk_id
            await self._emit("call.ended", p.CallEnded(
                call_id=call.id, reason=p.CallEndReason(m.reason)), other)
            if m.reason == "completed":
                await self._learn(ticket, self.clock() - call.started_at)
                await self._close(ticket, p.CloseReason.COMPLETED)
            elif sender.id == call.kiosk_id:
                await self._close(ticket, p.CloseReason.CANCELLED)
            else:
                await self._hand_back(ticket, p.CallEndReason(m.reason))
                await self._emit("ticket.update", await self._update_for(ticket),
                                 ticket.kiosk_id)
        await self._route(ticket.centre)
        await self._queue_changed(ticket.centre)


# -- changes of a clerk's record (``Store.update_clerk``: under the clerk's lock) --------------


def _lapsed(clerk: Clerk) -> None:
    """An offer went unanswered: a clerk who lets offers lapse is away."""
    clerk.offered_ticket = None
    clerk.available = False


def _offer(ticket_id: str, *, available: bool = False) -> Callable[[Clerk], bool]:
    """Offer ``ticket_id`` to a clerk who is free (and, for the rotation, ``available``);
    False when they no longer are."""
    def change(clerk: Clerk) -> bool:
        if clerk.call_id or clerk.offered_ticket or (available and not clerk.available):
            return False
        clerk.offered_ticket = ticket_id
        return True
    return change


def _in_call(call_id: str, ticket_id: str) -> Callable[[Clerk], bool]:
    """The clerk took ``ticket_id`` (offered to them, or picked) and is in ``call_id``."""
    def change(clerk: Clerk) -> bool:
        if clerk.call_id or clerk.offered_ticket not in (None, ticket_id):
            return False
        clerk.call_id, clerk.offered_ticket = call_id, None
        return True
    return change


def _calling(call_id: str) -> Callable[[Clerk], None]:
    """The clerk's call goes on under a new id (restarted)."""
    def change(clerk: Clerk) -> None:
        clerk.call_id = call_id
    return change


async def serve(config: HubConfig, stop: asyncio.Event | None = None) -> None:
    """Run a hub until ``stop`` is set (or until cancelled). Stopping closes every client's
    WebSocket at once (a transport drop to the clients, which redial and resume by token), so
    that it never waits on them."""
    from tongban.serving import runner as make_runner

    hub = Hub(config)
    runner = make_runner(hub.app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        log.info("hub.listening", host=config.host, port=config.port,
                 store="redis" if config.redis else "memory")
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
