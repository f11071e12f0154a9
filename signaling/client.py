"""A hub client for kiosks, desk servers and tests: signs a fresh token for every connection
attempt, keeps the resume token from the last welcome, and queues what the hub sends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from signaling import protocol as p
from signaling.auth import make_token


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
        self.sio = socketio.AsyncClient(reconnection=reconnection, reconnection_delay=0.2,
                                        reconnection_delay_max=1.0, logger=False,
                                        engineio_logger=False)
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.last: dict[str, dict[str, Any]] = {}
        """The latest payload of each event received."""
        self.sio.on("*", self._receive)
        self.sio.on("connect_error", self._refused)
        self.sio.on("disconnect", self._disconnected)
        self.listener: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None
        """Called with every event received, and with ``hub.disconnected`` (local) when the
        connection drops; queues are kept as well."""
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
            await self.listener("hub.disconnected", {"reason": str(reason)})
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

    async def _receive(self, event: str, data: Any = None) -> None:
        if event == "hub.welcome" and isinstance(data, dict):
            self.resume_token = data.get("resume_token")
            self.welcomed.set()
        payload = data if isinstance(data, dict) else {"data": data}
        self.last[event] = payload
        if self.keep_queues:
            self.queue(event).put_nowait(payload)
        elif event == "hub.welcome":  # only the newest welcome is kept, for connect()
            self.drain(event)
            self.queue(event).put_nowait(payload)
        if self.listener is not None:
            await self.listener(event, payload)

    def queue(self, event: str) -> asyncio.Queue[dict[str, Any]]:
        return self._queues.setdefault(event, asyncio.Queue())

    async def connect(self, timeout: float = 5.0) -> dict[str, Any]:
        """Connect and wait for the hub's welcome."""
        self.welcomed.clear()
        self.drain("hub.welcome")  # an older connection's
        await self.sio.connect(self.url, auth=self._auth, transports=["websocket"],
                               wait_timeout=timeout)
        return await self.next("hub.welcome", timeout)

    async def send(self, event: str, message: p.Message) -> None:
        await self.sio.emit(event, p.dump(message))

    async def send_raw(self, event: str, data: Any) -> None:
        await self.sio.emit(event, data)

    async def next(self, event: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next ``event`` received (waits up to ``timeout`` seconds)."""
        return await asyncio.wait_for(self.queue(event).get(), timeout)

    def drain(self, event: str) -> list[dict[str, Any]]:
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
