"""A hub client for kiosks, desk servers and tests: signs a fresh token for every connection
attempt, keeps the resume token from the last welcome, and hands on what the hub sends as the
protocol's models (``protocol.OUTBOUND``), parsed here at the boundary: an event that does not
validate is logged and refused, never half-used."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from signaling import protocol as p
from signaling.auth import make_token

log = structlog.get_logger("signaling.client")

DISCONNECTED = "hub.disconnected"
"""A local event (never on the wire): the connection to the hub dropped."""


class Disconnected(p.Message):
    """``hub.disconnected`` (local): the connection dropped; the client redials by itself."""

    reason: str


Listener = Callable[[str, p.Message], Awaitable[None]]


class HubClient:
    """One authenticated connection to the hub (reconnects and resumes by itself)."""

    def __init__(self, url: str, client_id: str, kind: p.ClientKind, key: Ed25519PrivateKey,
                 *, reconnection: bool = True, token_ttl: int = 60,
                 keep_queues: bool = True) -> None:
        self.url = url
        self.client_id = client_id
        self.kind = kind
        self.key = key
        self.token_ttl = token_ttl
        self.resume_token: str | None = None
        self.keep_queues = keep_queues
        """Queue every event for ``next``/``drain`` (a long-lived client with a listener
        turns this off, so nothing piles up; the welcome is always queued)."""
        self.reconnection = reconnection
        self._closing = False
        self._redial: asyncio.Task[None] | None = None
        # handle_sigint off: python-socketio's own SIGINT handler would disconnect every
        # client and cancel every task of the process, before the service can stop in order
        self.sio = socketio.AsyncClient(reconnection=reconnection, reconnection_delay=0.2,
                                        reconnection_delay_max=1.0, logger=False,
                                        engineio_logger=False, handle_sigint=False)
        self._queues: dict[str, asyncio.Queue[p.Message]] = {}
        self.last: dict[str, p.Message] = {}
        """The latest message of each event received."""
        self.refused: list[str] = []
        """Events the hub sent that did not validate (their names; they were dropped)."""
        self.sio.on("*", self._receive)
        self.sio.on("connect_error", self._refused)
        self.sio.on("disconnect", self._disconnected)
        self.listener: Listener | None = None
        """Called with every valid event received, and with ``hub.disconnected`` (local,
        ``Disconnected``) when the connection drops; queues are kept as well."""
        self.welcomed = asyncio.Event()
        self.refusal: dict[str, Any] | None = None
        """Why the hub refused the last connection attempt ({code, message})."""

    async def _refused(self, data: Any = None) -> None:
        if isinstance(data, dict):
            data = data.get("data", data)
        self.refusal = data if isinstance(data, dict) else {"code": "refused",
                                                            "message": str(data)}

    async def _disconnected(self, reason: Any = None) -> None:
        self.welcomed.clear()
        if self.listener is not None:
            await self.listener(DISCONNECTED, Disconnected(reason=str(reason)))
        # python-socketio reconnects after a lost transport but not when the server said
        # goodbye, which is what a hub does when it restarts: reconnect ourselves then
        if self.reconnection and reason == socketio.AsyncClient.reason.SERVER_DISCONNECT:
            self.redial()

    def redial(self) -> None:
        """Keep trying to connect in the background until it works (or ``close``): after a
        server's goodbye, or when the first connection failed."""
        if not self._closing and (self._redial is None or self._redial.done()):
            self._redial = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.2
        while not self._closing:
            await asyncio.sleep(delay)
            try:
                await self.connect(timeout=5.0)
                return
            except Exception:  # the hub is still down: try again, backing off to 2 s
                with contextlib.suppress(Exception):
                    await self.sio.disconnect()
                delay = min(2.0, delay * 2)

    @property
    def connected(self) -> bool:
        return bool(self.sio.connected) and self.welcomed.is_set()

    def _auth(self) -> dict[str, Any]:
        auth: dict[str, Any] = {"token": make_token(self.key, self.client_id, self.kind,
                                                    ttl=self.token_ttl)}
        if self.resume_token:
            auth["resume"] = self.resume_token
        return auth

    @staticmethod
    def parse(event: str, data: Any) -> p.Message:
        """One event from the hub as its protocol model; ValueError if it is not one."""
        model = p.OUTBOUND.get(event)
        if model is None:
            raise ValueError(f"the hub sends no event {event[:64]!r}")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "payload"
            raise ValueError(f"{event}: {where}: {first['msg']}") from None

    async def _receive(self, event: str, data: Any = None) -> None:
        try:
            message = self.parse(event, data)
        except ValueError as exc:
            # never the payload itself: it may carry a case's details
            log.warning("hub_client.event_refused", client=self.client_id, why=str(exc)[:200])
            self.refused.append(event[:64])
            return
        if isinstance(message, p.Welcome):
            self.resume_token = message.resume_token
            self.welcomed.set()
        self.last[event] = message
        if self.keep_queues:
            self.queue(event).put_nowait(message)
        elif event == "hub.welcome":  # only the newest welcome is kept, for connect()
            self.drain(event)
            self.queue(event).put_nowait(message)
        if self.listener is not None:
            await self.listener(event, message)

    def forget(self) -> None:
        """Drop what was heard (queues and ``last``) but the newest welcome: a kiosk calls
        this when a citizen's session ends, so that no receipt or command text outlives it."""
        welcome = self.last.get("hub.welcome")
        self.last.clear()
        for event in list(self._queues):
            if event != "hub.welcome":
                self.drain(event)
        if welcome is not None:
            self.last["hub.welcome"] = welcome

    def queue(self, event: str) -> asyncio.Queue[p.Message]:
        return self._queues.setdefault(event, asyncio.Queue())

    async def connect(self, timeout: float = 5.0) -> p.Welcome:
        """Connect and wait for the hub's welcome."""
        self.welcomed.clear()
        self.drain("hub.welcome")  # an older connection's
        await self.sio.connect(self.url, auth=self._auth, transports=["websocket"],
                               wait_timeout=timeout)
        welcome = await self.next("hub.welcome", timeout)
        assert isinstance(welcome, p.Welcome)
        return welcome

    async def send(self, event: str, message: p.Message) -> None:
        await self.sio.emit(event, p.dump(message))

    async def send_raw(self, event: str, data: Any) -> None:
        await self.sio.emit(event, data)

    async def next(self, event: str, timeout: float = 5.0) -> Any:
        """The next ``event`` received, as its model (waits up to ``timeout`` seconds).

        Typed ``Any`` for the tests' convenience: the object is always ``OUTBOUND[event]``."""
        return await asyncio.wait_for(self.queue(event).get(), timeout)

    def drain(self, event: str) -> list[p.Message]:
        q = self.queue(event)
        out = []
        while not q.empty():
            out.append(q.get_nowait())
        return out

    async def close(self) -> None:
        self._closing = True
        if self._redial is not None:
            self._redial.cancel()
        await self.sio.disconnect()
