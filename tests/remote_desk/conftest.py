"""Databases for the desk's store: a SQLite file, and a fresh database on the PostgreSQL this
machine runs (skipped with a reason where there is none)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from remote_desk.db import upgrade
from tests.remote_desk.deskkit import Desk, make_desk

PG_ADMIN = os.environ.get("TONGBAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _postgres_url() -> AsyncIterator[str]:
    import asyncpg

    try:
        admin = await asyncpg.connect(PG_ADMIN.replace("postgresql://", "postgres://"),
                                      timeout=3)
    except Exception as exc:  # no server here: the PostgreSQL variant cannot run
        pytest.skip(f"no PostgreSQL at {PG_ADMIN} ({type(exc).__name__})")
    name = f"tongban_test_{os.getpid()}_{id(admin) % 100000}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'desk.db'}"
        await asyncio.to_thread(upgrade, url)
        yield url
        return
    async for url in _postgres_url():
        await asyncio.to_thread(upgrade, url)
        yield url


@pytest.fixture
async def desk(tmp_path: Path, db_url: str) -> AsyncIterator[Desk]:
    """A desk for the centre yongjia on a real HTTP server, on each kind of database."""
    app, server, key = await make_desk(tmp_path, db_url)
    assert key is not None
    yield Desk(str(server.make_url("")).rstrip("/"), app, key)
    await server.close()
