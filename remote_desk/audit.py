"""The audit trail: every view, download and decision, hash-chained.

Each entry's hash is SHA-256 over the previous entry's hash and this entry's fields, so an
edited, deleted or reordered row breaks the chain at that row; ``verify`` walks the chain and
names the first broken entry. Entries carry ids and actions, never personal data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from remote_desk.models import AuditEntry

GENESIS = "0" * 64


def entry_hash(prev_hash: str, at: datetime, actor: str, action: str, target: str,
               detail: str) -> str:
    canonical = json.dumps([prev_hash, at.astimezone(UTC).isoformat(timespec="microseconds"),
                            actor, action, target, detail], ensure_ascii=False,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def record(session: AsyncSession, actor: str, action: str, target: str,
                 detail: str = "", at: datetime | None = None) -> AuditEntry:
    """Append one entry (the caller commits; concurrent writers serialise on the unique hash)."""
    last = (await session.execute(select(AuditEntry).order_by(AuditEntry.id.desc())
                                  .limit(1))).scalar_one_or_none()
    prev = last.hash if last else GENESIS
    when = at or datetime.now(UTC)
    entry = AuditEntry(at=when, actor=actor, action=action, target=target, detail=detail,
                       prev_hash=prev, hash=entry_hash(prev, when, actor, action, target, detail))
    session.add(entry)
    await session.flush()
    return entry


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    entries: int
    broken_at: int | None = None
    reason: str | None = None


async def verify(session: AsyncSession) -> ChainCheck:
    """Walk the whole chain in order."""
    prev = GENESIS
    count = 0
    result = await session.stream_scalars(select(AuditEntry).order_by(AuditEntry.id))
    async for entry in result:
        count += 1
        if entry.prev_hash != prev:
            return ChainCheck(False, count, entry.id, "an entry before it was removed or changed")
        at = entry.at if entry.at.tzinfo else entry.at.replace(tzinfo=UTC)
        if entry.hash != entry_hash(prev, at, entry.actor, entry.action, entry.target,
                                    entry.detail):
            return ChainCheck(False, count, entry.id, "this entry was edited")
        prev = entry.hash
    return ChainCheck(True, count)
