"""The audit chain under concurrency and against someone with the database: appends do not
fork, and the signed anchors outside the table catch deleted newest entries, a rewritten
chain (hashes recomputed with the project's own function) and forged anchors. On SQLite and
PostgreSQL, through the desk's real HTTP API and the ``tongban desk audit`` commands."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from remote_desk import audit
from remote_desk.blobs import new_key, parse_key
from remote_desk.db import upgrade
from remote_desk.models import AuditEntry
from tests.remote_desk.deskkit import Desk, login, make_desk


async def _verify_api(desk: Desk) -> dict[str, Any]:
    session, _ = await login(desk, "auditor")
    async with session, session.get(f"{desk.url}/api/audit/verify") as r:
        assert r.status == 200
        result: dict[str, Any] = await r.json()
        return result


async def _failed_login(desk: Desk, name: str) -> int:
    async with aiohttp.ClientSession() as session, session.post(
            f"{desk.url}/api/login", json={"username": name, "password": "wrong"}) as r:
        return r.status


async def test_failed_logins_at_the_same_moment_do_not_fork_the_chain(desk: Desk) -> None:
    statuses = await asyncio.gather(*(_failed_login(desk, f"nobody-{i}") for i in range(4)),
                                    _failed_login(desk, "clerk-yj"),
                                    _failed_login(desk, "auditor"))
    assert statuses == [401] * 6
    check = await _verify_api(desk)  # the auditor's login is one more entry
    assert check["ok"] and check["entries"] == 7, check
    async with desk.app.db() as db:
        rows = (await db.execute(select(AuditEntry.prev_hash))).scalars().all()
    assert len(set(rows)) == len(rows)


async def test_a_fork_cannot_be_committed(desk: Desk) -> None:
    await _failed_login(desk, "nobody")
    async with desk.app.db() as db:
        first = (await db.execute(select(AuditEntry))).scalar_one()
        db.add(AuditEntry(at=datetime.now(UTC), actor="x", action="login_failed",
                          target="127.0.0.1", detail="", prev_hash=first.prev_hash,
                          hash="f" * 64))
        with pytest.raises(IntegrityError):
            await db.commit()


async def _some_entries(desk: Desk, n: int) -> None:
    for i in range(n):
        assert await _failed_login(desk, f"nobody-{i}") == 401


async def test_the_running_desk_anchors_the_head_within_seconds(desk: Desk) -> None:
    await _some_entries(desk, 3)
    anchor = await desk.app.anchor_audit()  # what the desk's loop does every few seconds
    assert anchor is not None and anchor.entries == 3
    assert await desk.app.anchor_audit() is None  # the head has not moved: no new line
    lines = desk.app.anchors.path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["entries"] == 3
    check = await _verify_api(desk)
    assert check["ok"] and check["anchors"] == 1 and check["anchored_entries"] == 3, check


async def test_the_anchor_loop_runs_by_itself(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'desk.db'}"
    await asyncio.to_thread(upgrade, url)
    app, server, key = await make_desk(tmp_path, url, audit_anchor_seconds=0.2)
    try:
        desk = Desk(str(server.make_url("")).rstrip("/"), app, key)  # type: ignore[arg-type]
        await _some_entries(desk, 2)
        for _ in range(50):
            if app.anchors.path.exists():
                break
            await asyncio.sleep(0.1)
        found, bad = app.anchors.read()
        assert not bad and found and found[-1].entries == 2
    finally:
        await server.close()


async def _deleted_newest(desk: Desk) -> None:
    async with desk.app.db() as db:
        newest = (await db.execute(select(AuditEntry.id).order_by(AuditEntry.id.desc())
                                   .limit(2))).scalars().all()
        await db.execute(delete(AuditEntry).where(AuditEntry.id.in_(newest)))
        await db.commit()


async def _rewritten(desk: Desk) -> None:
    """Edit the second entry and recompute every later hash, as an insider could."""
    async with desk.app.db() as db:
        rows = (await db.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars().all()
        prev = audit.GENESIS
        fixed = []
        for i, row in enumerate(rows):
            actor = "someone-else" if i == 1 else row.actor
            at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
            new = audit.entry_hash(prev, at, actor, row.action, row.target, row.detail)
            fixed.append((row.id, actor, prev, new))
            prev = new
        # unique hashes: move every row aside first, then write the recomputed chain
        for row_id, _, _, _ in fixed:
            await db.execute(update(AuditEntry).where(AuditEntry.id == row_id).values(
                prev_hash=f"{row_id:064x}", hash=f"{row_id + 10**6:064x}"))
        for row_id, actor, prev_hash, new in fixed:
            await db.execute(update(AuditEntry).where(AuditEntry.id == row_id).values(
                actor=actor, prev_hash=prev_hash, hash=new))
        await db.commit()


@pytest.mark.parametrize(("tamper", "words"), [
    (_deleted_newest, "the newest entries were deleted"),
    (_rewritten, "the chain was rewritten after it was anchored"),
])
async def test_tampering_the_chain_alone_misses_is_caught_by_its_anchor(
        desk: Desk, tamper: Any, words: str) -> None:
    await _some_entries(desk, 5)
    assert await desk.app.anchor_audit() is not None
    async with desk.app.db() as db:
        assert (await audit.verify(db)).ok  # the chain alone: nothing to see
    await tamper(desk)
    async with desk.app.db() as db:
        assert (await audit.verify(db)).ok  # still nothing, without the anchor
    check = await _verify_api(desk)
    assert not check["ok"] and words in check["reason"], check


async def test_a_forged_anchor_fails_the_check(desk: Desk) -> None:
    await _some_entries(desk, 2)
    anchor = await desk.app.anchor_audit()
    assert anchor is not None
    forged = audit.Anchor(anchor.at, anchor.entries, anchor.head_id, anchor.head).signed(
        audit.anchor_key(parse_key(new_key())))  # another key
    desk.app.anchors.append(forged)
    check = await _verify_api(desk)
    assert not check["ok"] and "signature does not verify" in check["reason"]


def test_anchor_lines_are_parsed_strictly() -> None:
    good = audit.Anchor(datetime.now(UTC), 3, 7, "a" * 64, "c2ln")
    assert audit.Anchor.from_line(good.line()) == good
    for bad in ["", "[]", '{"kind": "x"}', good.line().replace('"entries":3', '"entries":-1'),
                good.line().replace('"head_id":7', '"head_id":"7"'), "{" * 2000]:
        with pytest.raises(ValueError):
            audit.Anchor.from_line(bad)


def _cli(*args: str, config: Path, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tongban", "desk", *args,
                           "--config", str(config)], capture_output=True, text=True,
                          timeout=60, check=False,
                          env={**os.environ, "TONGBAN_DESK_FILES_KEY": key})


def test_cli_anchors_and_catches_a_deleted_tail(tmp_path: Path) -> None:
    key = new_key()
    config = tmp_path / "desk.toml"
    database = tmp_path / "desk.db"
    config.write_text(f'[desk]\ndatabase = "sqlite:///{database}"\n'
                      f'files_dir = "{tmp_path / "files"}"\ncentres = ["yongjia"]\n')
    assert _cli("db", "upgrade", config=config, key=key).returncode == 0

    async def entries() -> None:
        from remote_desk.db import append_audit, make_engine, sessions

        engine = make_engine(f"sqlite:///{database}")
        async with sessions(engine)() as db:
            for i in range(4):
                await append_audit(db, "wang", "view", f"case-{i:04d}")
            await db.commit()
        await engine.dispose()

    asyncio.run(entries())
    unanchored = _cli("audit", "verify", config=config, key=key)
    assert unanchored.returncode == 0 and "no anchor covers this chain" in unanchored.stderr
    anchored = _cli("audit", "anchor", "--json", config=config, key=key)
    assert anchored.returncode == 0, anchored.stderr
    assert json.loads(anchored.stdout)["entries"] == 4
    public = _cli("audit", "public-key", config=config, key=key).stdout.strip()
    copy = tmp_path / "elsewhere.jsonl"
    copy.write_text((tmp_path / "files" / "audit-anchors.jsonl").read_text())
    ok = _cli("audit", "verify", "--json", config=config, key=key)
    assert ok.returncode == 0 and json.loads(ok.stdout)["anchors"] == 1
    import sqlite3

    with sqlite3.connect(database) as db:
        db.execute("delete from audit where id = (select max(id) from audit)")
    (tmp_path / "files" / "audit-anchors.jsonl").unlink()  # the insider removed it too
    lost = _cli("audit", "verify", config=config, key=key)
    assert lost.returncode == 0  # nothing left here to show it
    caught = _cli("audit", "verify", "--anchors", str(copy), "--public-key", public,
                  config=config, key="")
    assert caught.returncode == 51
    assert "the newest entries were deleted" in caught.stderr
    bad_key = _cli("audit", "verify", "--public-key", "not a key", config=config, key="")
    assert bad_key.returncode == 2 and "--public-key" in bad_key.stderr
