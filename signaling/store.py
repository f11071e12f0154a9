"""Where the hub keeps queues, tickets, clerks, calls, clients and grace deadlines.

One interface, two implementations: ``MemoryStore`` (one process, the default) and
``RedisStore`` (several hub processes share state, so any process can serve any party and a
process can die without losing a ticket). Routing decisions run under a per-centre lock.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from signaling.protocol import ClientKind, CloseReason, TicketState

M = TypeVar("M", bound=BaseModel)


class Ticket(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    case_id: str
    kiosk_id: str
    site: str
    centre: str
    matter: str
    state: TicketState = TicketState.WAITING
    created_at: float
    enqueued_at: float
    offered_to: str | None = None
    """The clerk (``clerk_key``) the ticket is offered to."""
    clerk_id: str | None = None
    """The clerk (``clerk_key``) in a call with the ticket."""
    desk_id: str | None = None
    call_id: str | None = None
    closed_reason: CloseReason | None = None


def clerk_key(desk_id: str, clerk_id: str) -> str:
    """A clerk at the hub: clerk ids are their desk's own, so they are scoped by desk (a
    desk's ``wang`` is not another desk's ``wang``). Client ids never contain ``/``."""
    return f"{desk_id}/{clerk_id}"


class Clerk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    """The clerk's id at their desk (what the protocol carries)."""
    desk_id: str
    centres: dict[str, list[str]]
    """The centres the clerk is signed in for, each with the matters they handle there."""
    available: bool = True
    idle_since: float
    offered_ticket: str | None = None
    call_id: str | None = None

    @property
    def key(self) -> str:
        return clerk_key(self.desk_id, self.id)

    def handles(self, centre: str, matter: str) -> bool:
        """Signed in for ``centre`` and handling ``matter`` there."""
        return matter in self.centres.get(centre, [])


class Call(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    ticket_id: str
    kiosk_id: str
    desk_id: str
    clerk_id: str
    """The clerk's id at ``desk_id``."""
    started_at: float

    @property
    def clerk_key(self) -> str:
        return clerk_key(self.desk_id, self.clerk_id)


class ServiceTime(BaseModel):
    """The learned service time of one matter at one centre (``service_time:CENTRE:MATTER``)."""

    model_config = ConfigDict(extra="forbid")

    seconds: float
    calls: int = 0
    recent: list[float] = Field(default_factory=list)
    """The latest completed calls' durations (for the time left of a call under way)."""


class ClientRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    kind: ClientKind
    sid: str | None = None
    connected: bool = False
    resume_token: str = ""
    disconnected_at: float | None = None
    clerks: list[str] = Field(default_factory=list)
    """Desks: the clerks signed in through this desk."""


class Store(ABC):
    """The hub's state."""

    @abstractmethod
    async def get(self, model: type[M], key: str) -> M | None: ...

    async def get_many(self, model: type[M], keys: list[str]) -> list[M | None]:
        """Several values in one round trip where the store allows."""
        return [await self.get(model, key) for key in keys]

    @abstractmethod
    async def put(self, key: str, value: BaseModel) -> None: ...

    @abstractmethod
    async def delete(self, key: str) -> None: ...

    @abstractmethod
    async def set_add(self, key: str, member: str) -> None: ...

    @abstractmethod
    async def set_remove(self, key: str, member: str) -> None: ...

    @abstractmethod
    async def set_members(self, key: str) -> list[str]: ...

    @abstractmethod
    async def queue_add(self, queue: str, ticket_id: str, score: float) -> None: ...

    @abstractmethod
    async def queue_remove(self, queue: str, ticket_id: str) -> None: ...

    @abstractmethod
    async def queue_ids(self, queue: str) -> list[tuple[str, float]]:
        """Members in order (lowest score first)."""

    @abstractmethod
    async def grace_add(self, key: str, deadline: float) -> None: ...

    @abstractmethod
    async def grace_remove(self, key: str) -> None: ...

    @abstractmethod
    async def grace_claim_due(self, now: float) -> list[str]:
        """Deadlines passed by ``now``, each handed to exactly one caller."""

    @abstractmethod
    async def nonce_unused(self, nonce: str, ttl: int) -> bool: ...

    @abstractmethod
    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        """An async context manager serialising work on ``name`` (across processes)."""

    @abstractmethod
    async def mark(self, key: str, ttl: float) -> None:
        """Set a flag that lapses after ``ttl`` seconds."""

    @abstractmethod
    async def marked(self, key: str) -> bool:
        """Whether the flag ``key`` is set (and has not lapsed)."""

    @abstractmethod
    async def told(self, centre: str) -> dict[str, str]:
        """What each waiting ticket's kiosk of ``centre`` was last told (``protocol.shown``)."""

    @abstractmethod
    async def tell(self, centre: str, changed: dict[str, str], gone: list[str]) -> None:
        """Record what was told now (``changed``), and forget tickets no longer waiting."""

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None

    # typed helpers
    async def ticket(self, ticket_id: str) -> Ticket | None:
        return await self.get(Ticket, f"ticket:{ticket_id}")

    async def clerk(self, key: str) -> Clerk | None:
        """A clerk by ``clerk_key``."""
        return await self.get(Clerk, f"clerk:{key}")

    async def update_clerk(self, key: str, change: Callable[[Clerk], bool | None]
                           ) -> Clerk | None:
        """Read, change and write one clerk's record under the clerk's own lock, so that work
        on two of the clerk's centres (each under its centre's lock) never loses the other's
        change. ``change`` returns False to leave the record as it is. Returns the record as
        written, or None (no such clerk, or not changed)."""
        async with self.lock(f"clerk:{key}"):
            clerk = await self.clerk(key)
            if clerk is None or change(clerk) is False:
                return None
            await self.save(clerk)
            return clerk

    async def call(self, call_id: str) -> Call | None:
        return await self.get(Call, f"call:{call_id}")

    async def client(self, client_id: str) -> ClientRecord | None:
        return await self.get(ClientRecord, f"client:{client_id}")

    async def save(self, value: Ticket | Clerk | Call | ClientRecord) -> None:
        prefix = {Ticket: "ticket", Clerk: "clerk", Call: "call", ClientRecord: "client"}
        ident = value.key if isinstance(value, Clerk) else value.id
        await self.put(f"{prefix[type(value)]}:{ident}", value)


class MemoryStore(Store):
    """State in this process."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._sets: dict[str, set[str]] = {}
        self._queues: dict[str, dict[str, float]] = {}
        self._grace: dict[str, float] = {}
        self._nonces: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._told: dict[str, dict[str, str]] = {}
        self._marks: dict[str, float] = {}

    async def get(self, model: type[M], key: str) -> M | None:
        raw = self._values.get(key)
        return None if raw is None else model.model_validate_json(raw)

    async def put(self, key: str, value: BaseModel) -> None:
        self._values[key] = value.model_dump_json()

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def set_add(self, key: str, member: str) -> None:
        self._sets.setdefault(key, set()).add(member)

    async def set_remove(self, key: str, member: str) -> None:
        self._sets.get(key, set()).discard(member)

    async def set_members(self, key: str) -> list[str]:
        return sorted(self._sets.get(key, set()))

    async def queue_add(self, queue: str, ticket_id: str, score: float) -> None:
        self._queues.setdefault(queue, {})[ticket_id] = score

    async def queue_remove(self, queue: str, ticket_id: str) -> None:
        self._queues.get(queue, {}).pop(ticket_id, None)

    async def queue_ids(self, queue: str) -> list[tuple[str, float]]:
        return sorted(self._queues.get(queue, {}).items(), key=lambda kv: (kv[1], kv[0]))

    async def grace_add(self, key: str, deadline: float) -> None:
        self._grace[key] = deadline

    async def grace_remove(self, key: str) -> None:
        self._grace.pop(key, None)

    async def grace_claim_due(self, now: float) -> list[str]:
        due = [k for k, d in self._grace.items() if d <= now]
        for key in due:
            del self._grace[key]
        return due

    async def nonce_unused(self, nonce: str, ttl: int) -> bool:
        now = time.monotonic()
        if len(self._nonces) > 10_000:
            self._nonces = {k: v for k, v in self._nonces.items() if v > now}
        if self._nonces.get(nonce, 0) > now:
            return False
        self._nonces[nonce] = now + ttl
        return True

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        return self._lock(name)

    @asynccontextmanager
    async def _lock(self, name: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            yield

    async def mark(self, key: str, ttl: float) -> None:
        self._marks[key] = time.monotonic() + ttl

    async def marked(self, key: str) -> bool:
        until = self._marks.get(key)
        if until is not None and until <= time.monotonic():
            del self._marks[key]
            return False
        return until is not None

    async def told(self, centre: str) -> dict[str, str]:
        return dict(self._told.get(centre, {}))

    async def tell(self, centre: str, changed: dict[str, str], gone: list[str]) -> None:
        told = self._told.setdefault(centre, {})
        told.update(changed)
        for ticket_id in gone:
            told.pop(ticket_id, None)


class RedisStore(Store):
    """State in Redis, shared by every hub process; keys are prefixed ``tb:``."""

    def __init__(self, url: str, prefix: str = "tb:") -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.prefix = prefix
        # a blocking pool: under a burst of connects, wait for a connection instead of
        # failing (redis-py's default pool raises beyond 100)
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=20,
                                                        decode_responses=True)
        self.redis = aioredis.Redis(connection_pool=pool)

    def _k(self, key: str) -> str:
        return self.prefix + key

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:  # any failure means "not reachable" for the health check
            return False

    async def close(self) -> None:
        await self.redis.aclose()

    async def get(self, model: type[M], key: str) -> M | None:
        raw = await self.redis.get(self._k(key))
        return None if raw is None else model.model_validate_json(raw)

    async def get_many(self, model: type[M], keys: list[str]) -> list[M | None]:
        if not keys:
            return []
        raws: list[Any] = await self.redis.mget([self._k(k) for k in keys])
        return [None if raw is None else model.model_validate_json(raw) for raw in raws]

    async def put(self, key: str, value: BaseModel) -> None:
        await self.redis.set(self._k(key), value.model_dump_json(), ex=7 * 86400)

    async def delete(self, key: str) -> None:
        await self.redis.delete(self._k(key))

    async def set_add(self, key: str, member: str) -> None:
        await self.redis.sadd(self._k(key), member)

    async def set_remove(self, key: str, member: str) -> None:
        await self.redis.srem(self._k(key), member)

    async def set_members(self, key: str) -> list[str]:
        return sorted(str(m) for m in await self.redis.smembers(self._k(key)))

    async def queue_add(self, queue: str, ticket_id: str, score: float) -> None:
        await self.redis.zadd(self._k(f"queue:{queue}"), {ticket_id: score})

    async def queue_remove(self, queue: str, ticket_id: str) -> None:
        await self.redis.zrem(self._k(f"queue:{queue}"), ticket_id)

    async def queue_ids(self, queue: str) -> list[tuple[str, float]]:
        pairs: list[Any] = await self.redis.zrange(self._k(f"queue:{queue}"), 0, -1,
                                                    withscores=True)
        return [(str(pair[0]), float(pair[1])) for pair in pairs]

    async def grace_add(self, key: str, deadline: float) -> None:
        await self.redis.zadd(self._k("grace"), {key: deadline})

    async def grace_remove(self, key: str) -> None:
        await self.redis.zrem(self._k("grace"), key)

    async def grace_claim_due(self, now: float) -> list[str]:
        due: list[Any] = await self.redis.zrangebyscore(self._k("grace"), "-inf", now)
        claimed: list[str] = []
        for key in (str(k) for k in due):
            if await self.redis.zrem(self._k("grace"), key):  # only one process wins
                claimed.append(key)
        return claimed

    async def nonce_unused(self, nonce: str, ttl: int) -> bool:
        return bool(await self.redis.set(self._k(f"nonce:{nonce}"), "1", nx=True,
                                         ex=max(1, ttl)))

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        return self._lock(name)

    @asynccontextmanager
    async def _lock(self, name: str) -> AsyncIterator[None]:
        lock = self.redis.lock(self._k(f"lock:{name}"), timeout=10, blocking_timeout=10,
                               sleep=0.002)  # the default 0.1 s poll would serialise slowly
        async with lock:
            yield

    async def mark(self, key: str, ttl: float) -> None:
        await self.redis.set(self._k(f"mark:{key}"), "1", px=max(1, int(ttl * 1000)))

    async def marked(self, key: str) -> bool:
        return bool(await self.redis.exists(self._k(f"mark:{key}")))

    async def told(self, centre: str) -> dict[str, str]:
        told: dict[Any, Any] = await self.redis.hgetall(self._k(f"told:{centre}"))
        return {str(k): str(v) for k, v in told.items()}

    async def tell(self, centre: str, changed: dict[str, str], gone: list[str]) -> None:
        key = self._k(f"told:{centre}")
        async with self.redis.pipeline(transaction=False) as pipe:
            if changed:
                pipe.hset(key, mapping=changed)  # type: ignore[arg-type]
            if gone:
                pipe.hdel(key, *gone)
            pipe.expire(key, 7 * 86400)
            await pipe.execute()
