"""Database engines and migrations: SQLite by default, PostgreSQL by URL; Alembic only.

Writers meet in two places. On SQLite every transaction begins IMMEDIATE (it takes the write
lock at BEGIN and waits up to the busy timeout for it), so a transaction that reads and then
writes is never refused halfway for a lock another reader holds. On both, the audit chain is
appended by one transaction at a time (``append_audit``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from remote_desk import audit

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long a SQLite transaction waits for the write lock before the request is refused."""
AUDIT_LOCK = 0x7462_6175_6469_7400
"""PostgreSQL advisory lock key held by the transaction that appends to the audit chain."""
CONTENTION_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
"""PostgreSQL: serialization failure, deadlock detected, lock not available."""


def async_url(url: str) -> str:
    """Accept plain URLs and pick the async driver (aiosqlite, asyncpg)."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> AsyncEngine:
    full = async_url(url)
    if not full.startswith("sqlite"):
        return create_async_engine(full, pool_pre_ping=True)
    engine = create_async_engine(full, pool_pre_ping=True,
                                 connect_args={"timeout": busy_timeout_s})

    @event.listens_for(engine.sync_engine, "connect")
    def _driver_does_not_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (below)

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def sessions(engine: AsyncEngine) -> async_sessionmaker:  # type: ignore[type-arg]
    return async_sessionmaker(engine, expire_on_commit=False)


async def append_audit(session: AsyncSession, actor: str, action: str, target: str,
                       detail: str = "") -> None:
    """Append one audit entry, as the transaction's last write (the caller commits).

    Each entry names the hash of the one before, so two transactions appending at once would
    fork the chain: on PostgreSQL the transaction first takes an advisory lock held until it
    ends (last, so that nothing else is waited for while holding it); SQLite's IMMEDIATE
    transactions already admit one writer at a time."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(AUDIT_LOCK)))
    await audit.record(session, actor, action, target, detail)


def is_contention(exc: DBAPIError) -> bool:
    """The database gave up waiting for another transaction (nothing was written)."""
    if getattr(exc.orig, "sqlstate", None) in CONTENTION_SQLSTATES:
        return True
    return "database is locked" in str(exc.orig) or "database is busy" in str(exc.orig)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", async_url(url))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (blocking: run it from a thread or the CLI)."""
    command.upgrade(alembic_config(url), revision)
