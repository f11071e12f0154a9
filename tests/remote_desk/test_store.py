"""The desk's store: encrypted content-addressed files, migrations, the hash-chained audit."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import delete, select, text, update

from remote_desk import audit
from remote_desk.blobs import BlobError, BlobStore, new_key, parse_key
from remote_desk.db import alembic_config, make_engine, sessions, upgrade
from remote_desk.models import AuditEntry, Case, CaseCounter, CaseFile


def test_blobs_are_encrypted_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, parse_key(new_key()))
    data = b"\xff\xd8 a scanned page" * 100
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.put(data) == digest and len(list(tmp_path.rglob("*"))) == 3  # 2 dirs + file
    on_disk = next(p for p in tmp_path.rglob("*") if p.is_file()).read_bytes()
    assert b"scanned page" not in on_disk  # encrypted at rest
    assert store.get(digest) == data


def test_tampered_renamed_or_wrongly_keyed_blobs_do_not_open(tmp_path: Path) -> None:
    key = parse_key(new_key())
    store = BlobStore(tmp_path, key)
    digest = store.put(b"proxy authorisation letter")
    path = next(p for p in tmp_path.rglob("*") if p.is_file())
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(BlobError, match="does not decrypt"):
        store.get(digest)
    other = BlobStore(tmp_path, parse_key(new_key()))
    digest2 = store.put(b"another page")
    with pytest.raises(BlobError, match="wrong key"):
        other.get(digest2)
    with pytest.raises(BlobError):
        store.get("../../etc/passwd")
    with pytest.raises(BlobError, match="no such file"):
        store.get("0" * 64)
    with pytest.raises(ValueError, match="32 bytes"):
        parse_key("c2hvcnQ=")


async def test_migrations_create_the_schema(db_url: str) -> None:
    engine = make_engine(db_url)
    async with sessions(engine)() as session:
        session.add(Case(id="case-0001", centre="yongjia", matter="yb-ydjz-ba",
                         kiosk_id="shengze-01", manifest_sha256="a" * 64,
                         received_at=datetime.now(UTC),
                         files=[CaseFile(name="letter.pdf", material="proxy_letter",
                                         content_type="application/pdf", size=10,
                                         sha256="b" * 64)]))
        await session.commit()
        case = (await session.execute(select(Case))).scalar_one()
        assert case.state == "received" and case.id == "case-0001"
    await engine.dispose()


async def test_audit_chain_verifies_and_detects_edits_and_deletions(db_url: str) -> None:
    engine = make_engine(db_url)
    make = sessions(engine)
    async with make() as session:
        for i, action in enumerate(["view", "download", "decide", "view"]):
            await audit.record(session, f"clerk-{i % 2}", action, "case-0001",
                               detail=f"material {i}")
        await session.commit()
    async with make() as session:
        check = await audit.verify(session)
        assert check.ok and check.entries == 4
    async with make() as session:  # someone edits a row in the database directly
        await session.execute(update(AuditEntry).where(AuditEntry.id == 2)
                              .values(actor="nobody"))
        await session.commit()
    async with make() as session:
        check = await audit.verify(session)
        assert not check.ok and check.broken_at == 2 and "edited" in (check.reason or "")
    async with make() as session:  # ... or deletes one
        await session.execute(update(AuditEntry).where(AuditEntry.id == 2)
                              .values(actor="clerk-1"))
        await session.execute(delete(AuditEntry).where(AuditEntry.id == 3))
        await session.commit()
    async with make() as session:
        check = await audit.verify(session)
        assert not check.ok and check.broken_at == 4 and "removed" in (check.reason or "")
    await engine.dispose()


async def test_case_counters_start_after_the_numbers_already_given(db_url: str,
                                                                   tmp_path: Path) -> None:
    """Migration 0003 on a store with numbered cases: the next number follows the highest."""
    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0002")
    engine = make_engine(db_url)
    async with engine.begin() as connection:
        for n, (centre, number) in enumerate([
                ("yongjia", "yongjia-20261126-00001"), ("yongjia", "yongjia-20261126-00007"),
                ("lu-cheng", "lu-cheng-20261126-00002"), ("yongjia", None)]):
            await connection.execute(text(
                "INSERT INTO cases (id, centre, matter, kiosk_id, state, case_number, "
                "manifest_sha256, received_at) VALUES (:id, :centre, 'm', 'k', 'accepted', "
                ":number, :sha, :at)"), {"id": f"case-{n:04d}", "centre": centre,
                                         "number": number, "sha": "a" * 64,
                                         "at": datetime.now(UTC)})
    await engine.dispose()
    await asyncio.to_thread(upgrade, db_url)
    engine = make_engine(db_url)
    async with sessions(engine)() as session:
        counters = (await session.execute(select(CaseCounter).order_by(CaseCounter.centre))
                    ).scalars().all()
        assert [(c.centre, c.day, c.last_number) for c in counters] == [
            ("lu-cheng", date(2026, 11, 26), 2), ("yongjia", date(2026, 11, 26), 7)]
        case = (await session.execute(select(Case).where(Case.id == "case-0003"))).scalar_one()
        assert (case.state, case.version, case.transfer_to) == ("accepted", 0, None)
    await engine.dispose()
