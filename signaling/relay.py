"""How call events cross hub processes over Redis without a store read per message.

``CallRoutes`` remembers the two parties of each call the relay has seen (a call's parties
never change: a restart or a transfer makes a new call id, a hang-up deletes the record), and
forgets a call the moment Redis says its record changed. ``HubRedisManager`` is
python-socketio's Redis manager with four changes: every publish leaves through one ordered,
pipelined writer (no silent drop, no reordering through a pool of connections); the listener
is one connection that also receives Redis's invalidations of call records (client-side
caching, BCAST mode), in order with the events, so a process forgets a call before it delivers
anything that followed the call's end; a process skips its own publications without decoding
them; and an event for one client's room is encoded only when that client is here, and
handed to its connection in line (no task per recipient).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import socketio
import structlog
from socketio import packet as sio_packet

from signaling import protocol as p
from signaling.store import Store

log = structlog.get_logger("signaling.relay")

RELAYED_EVENTS: dict[type[p.Message], str] = {
    p.CallOffer: "call.offer", p.CallAnswer: "call.answer", p.CallIce: "call.ice",
    p.CallCommand: "call.command"}
"""The call events the hub passes from one party to the other, by model."""

INVALIDATIONS = b"__redis__:invalidate"
"""The channel on which Redis announces changed keys to a tracking client (RESP2)."""


@dataclass(frozen=True, slots=True)
class Route:
    """The parties of one call."""

    kiosk_id: str
    desk_id: str

    def other(self, sender_id: str) -> str | None:
        """Where ``sender_id``'s call events go; None if the sender is not a party."""
        if sender_id == self.kiosk_id:
            return self.desk_id
        if sender_id == self.desk_id:
            return self.kiosk_id
        return None


class CallRoutes:
    """Call id -> parties, read from the store once per call while invalidations are heard.

    Until a listener ``trust``s it (Redis tracking is on and subscribed), every lookup reads
    the store, as the in-memory hub does. A lookup whose key was invalidated while it was
    reading, or that straddles a lost listener connection, is returned but not remembered.
    Relays that have to wait for the store run one at a time per call, in arrival order
    (``ordered``), so a cold cache cannot reorder a call's events.
    """

    MAX_ROUTES = 100_000

    def __init__(self, store: Store) -> None:
        self.store = store
        self._routes: dict[str, Route] = {}
        self._trusted = False
        self._generation = 0
        self._reading: dict[str, bool] = {}
        """Call ids being read from the store -> invalidated meanwhile."""
        self._queues: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @property
    def trusted(self) -> bool:
        return self._trusted

    def trust(self) -> None:
        """Invalidations are heard from now on: lookups may be remembered."""
        self._routes.clear()
        self._generation += 1
        self._trusted = True

    def distrust(self) -> None:
        """Invalidations may be missed (listener lost): forget everything, remember nothing."""
        self._routes.clear()
        self._generation += 1
        self._trusted = False

    def forget(self, call_id: str) -> None:
        self._routes.pop(call_id, None)
        if call_id in self._reading:
            self._reading[call_id] = True

    def forget_all(self) -> None:
        self._routes.clear()
        self._generation += 1

    def cached(self, call_id: str) -> Route | None:
        """The remembered route, if no relay of this call is waiting for the store."""
        if call_id in self._queues:
            return None
        return self._routes.get(call_id)

    async def resolve(self, call_id: str) -> Route | None:
        """The call's route (remembered, or read from the store and remembered if safe)."""
        known = self._routes.get(call_id)
        if known is not None:
            return known
        generation, outer = self._generation, call_id in self._reading
        self._reading.setdefault(call_id, False)
        try:
            call = await self.store.call(call_id)
            invalidated = self._reading[call_id]
        finally:
            if not outer:
                del self._reading[call_id]
        if call is None:
            return None
        route = Route(call.kiosk_id, call.desk_id)
        if self._trusted and generation == self._generation and not invalidated:
            if len(self._routes) >= self.MAX_ROUTES:
                del self._routes[next(iter(self._routes))]
            self._routes[call_id] = route
        return route

    @asynccontextmanager
    async def ordered(self, call_id: str) -> AsyncIterator[None]:
        """One relay of ``call_id`` at a time, first come first served (asyncio.Lock is FIFO);
        while any waits, ``cached`` sends later relays of the call here too."""
        lock, users = self._queues.setdefault(call_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._queues[call_id]


LISTEN_IDLE_S = 5.0
"""The listener pings Redis after this long without a message, and reconnects if the PING
goes unanswered for as long again."""


class HubRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio's Redis manager with an ordered publisher and a tracking listener."""

    MAX_BATCH = 512
    MAX_BACKLOG = 200_000

    def __init__(self, url: str, *, channel: str, routes: CallRoutes, call_prefix: str,
                 client_rooms: str = "client:",
                 redis_options: dict[str, Any] | None = None) -> None:
        super().__init__(url, channel=channel, redis_options=redis_options)
        self.routes = routes
        self.call_prefix = call_prefix
        self.client_rooms = client_rooms
        """Rooms named so hold the connections of one client (usually one)."""
        own = json.dumps({"sent_by": self.host_id}, separators=(",", ":"))
        self._own = own[:-1].encode() + b","
        """How this process's publications begin (``host_id`` may name another process: a
        callback's reply names the process it goes to)."""
        self._outbox: deque[str] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._publisher: Any = None
        self.dropped = 0
        self.listener_id: int | None = None
        """Redis's id of the listening connection (to find it in CLIENT LIST)."""

    # -- delivering here ------------------------------------------------------------------------

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        """Deliver to this process's members of the message's room; a client's own room takes
        the short way (no packet built when the client is elsewhere, no task per send)."""
        room = message.get("room")
        if not isinstance(room, str) or not room.startswith(self.client_rooms) or \
                message.get("callback") is not None or message.get("binary"):
            await super()._handle_emit(message)
            return
        namespace = message.get("namespace") or "/"
        skip = message.get("skip_sid")
        targets = [eio_sid for sid, eio_sid in self.get_participants(namespace, room)
                   if sid != skip and not (isinstance(skip, list) and sid in skip)]
        if not targets:
            return
        data = message["data"]
        args = list(data) if isinstance(data, list) else [data]
        if args == [None]:  # as python-socketio: a lone None is no argument
            args = []
        encoded = self.server.packet_class(sio_packet.EVENT, namespace=namespace,
                                           data=[message["event"], *args]).encode()
        for eio_sid in targets:  # in line: events keep their order on each connection
            await self.server.eio.send(eio_sid, encoded)

    # -- publishing: one writer, in order, batched --------------------------------------------

    async def _publish(self, data: dict[str, Any]) -> None:
        """Queue ``data`` for every other process (never suspends: callers stay in order)."""
        text = json.dumps({"sent_by": self.host_id, **data}, separators=(",", ":"))
        if len(self._outbox) >= self.MAX_BACKLOG:  # Redis unreachable for a long while
            self._outbox.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("hub.publish_dropped", dropped=self.dropped)
        self._outbox.append(text)
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        retry = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                batch = [self._outbox[i] for i in range(min(len(self._outbox),
                                                            self.MAX_BATCH))]
                try:
                    if self._publisher is None:
                        self._publisher = self._get_redis_module().Redis.from_url(
                            self.redis_url, **self.redis_options)
                    async with self._publisher.pipeline(transaction=False) as pipe:
                        for text in batch:
                            pipe.publish(self.channel, text)
                        await pipe.execute()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Redis away: keep the batch, retry in order
                    log.error("hub.publish_retry", error=type(exc).__name__,
                              waiting=len(self._outbox), retry_s=retry)
                    self._publisher = None
                    await asyncio.sleep(retry)
                    retry = min(retry * 2, 2.0)
                    continue
                retry = 0.05
                for _ in batch:
                    self._outbox.popleft()

    # -- listening: events and invalidations on one connection ----------------------------------

    async def _subscribe(self) -> Any:
        """A RESP2 connection tracking call records (to itself) and subscribed."""
        client = self._get_redis_module().Redis.from_url(self.redis_url, protocol=2)
        conn = client.connection_pool.make_connection()
        await conn.connect()
        await conn.send_command("CLIENT", "ID")
        own_id = await conn.read_response()
        self.listener_id = int(own_id)
        await conn.send_command("CLIENT", "TRACKING", "on", "REDIRECT", own_id, "BCAST",
                                "PREFIX", self.call_prefix)
        await conn.read_response()
        await conn.send_command("SUBSCRIBE", self.channel, INVALIDATIONS)
        for _ in range(2):
            await conn.read_response()  # the two confirmations, in order
        return conn

    def _invalidated(self, keys: Any) -> None:
        if keys is None:  # the database was flushed
            self.routes.forget_all()
            return
        cut = len(self.call_prefix)
        for key in keys:
            self.routes.forget(key.decode()[cut:])

    async def _listen(self) -> AsyncIterator[bytes]:  # pragma: no branch
        channel = self.channel.encode()
        retry = 0.05
        while True:
            conn = None
            try:
                conn = await self._subscribe()
                self.routes.trust()
                if retry > 0.05:
                    log.info("hub.listener_back")
                retry = 0.05
                pinged = False
                while True:
                    # redis-py's connections time a read out after socket_timeout (5 s): an
                    # idle channel is not a lost one. Wait with a timeout of our own, then
                    # ask the server; only a PING left unanswered means the connection died.
                    reply = await conn.read_response(timeout=LISTEN_IDLE_S)
                    if reply is None:
                        if pinged:
                            raise ConnectionError("Redis did not answer PING")
                        await conn.send_command("PING")
                        pinged = True
                        continue
                    pinged = False
                    if not isinstance(reply, list) or len(reply) != 3 or \
                            reply[0] != b"message":
                        continue
                    if reply[1] == INVALIDATIONS:
                        self._invalidated(reply[2])
                    elif reply[1] == channel and not reply[2].startswith(self._own):
                        yield reply[2]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: remember no route until heard again
                self.routes.distrust()
                log.error("hub.listener_lost", error=type(exc).__name__, retry_s=retry)
                await asyncio.sleep(retry)
                retry = min(retry * 2, 5.0)
            finally:
                if conn is not None:
                    await conn.disconnect()

    async def close(self) -> None:
        """Send what is queued (for up to 2 s), then stop the writer."""
        deadline = time.monotonic() + 2
        while self._outbox and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.aclose()
            self._publisher = None
