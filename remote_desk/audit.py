"""The audit trail: every view, download and decision, hash-chained and anchored.

Each entry's hash is SHA-256 over the previous entry's hash and this entry's fields, so an
edited, deleted or reordered row breaks the chain at that row; ``verify`` walks the chain and
names the first broken entry. Entries carry ids and actions, never personal data.

The chain alone cannot show two things: that its newest entries were deleted, or that someone
with the table edited an entry and recomputed every later hash (the function is public). For
those the desk writes anchors outside the table: every few seconds while the head moves, a
line in an append-only file holding the count of entries, the head's id and hash, signed
with an Ed25519 key derived from the desk's file key (so no second secret to keep; the public
half is printed by ``tongban desk audit public-key`` for anyone who checks a copy). ``verify``
checks every anchor it is given: an anchored head that is gone, moved or different means the
chain was cut or rewritten after that anchor. Entries newer than the last anchor are covered
only by the chain; a copy of the anchor file kept on another host covers a lost or cut file.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from remote_desk.models import AuditEntry

GENESIS = "0" * 64
ANCHOR_KIND = "tongban-audit-anchor-v1"
ANCHOR_KEY_INFO = b"tongban desk audit anchor v1"
MAX_ANCHOR_LINE = 1024


def entry_hash(prev_hash: str, at: datetime, actor: str, action: str, target: str,
               detail: str) -> str:
    canonical = json.dumps([prev_hash, at.astimezone(UTC).isoformat(timespec="microseconds"),
                            actor, action, target, detail], ensure_ascii=False,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def record(session: AsyncSession, actor: str, action: str, target: str,
                 detail: str = "", at: datetime | None = None) -> AuditEntry:
    """Append one entry (the caller commits). Callers go through ``db.append_audit``, which
    admits one appending transaction at a time; the unique ``prev_hash`` refuses a fork."""
    last = (await session.execute(select(AuditEntry).order_by(AuditEntry.id.desc())
                                  .limit(1))).scalar_one_or_none()
    prev = last.hash if last else GENESIS
    when = at or datetime.now(UTC)
    entry = AuditEntry(at=when, actor=actor, action=action, target=target, detail=detail,
                       prev_hash=prev, hash=entry_hash(prev, when, actor, action, target, detail))
    session.add(entry)
    await session.flush()
    return entry


# -- anchors ------------------------------------------------------------------------------


def anchor_key(files_key: bytes) -> Ed25519PrivateKey:
    """The desk's anchor signing key, derived from its file key (HKDF-SHA256)."""
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=ANCHOR_KEY_INFO).derive(files_key)
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_text(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ValueError("not an Ed25519 public key in base64") from None


@dataclass(frozen=True)
class Anchor:
    """The chain's head at one moment: ``entries`` rows up to and including ``head_id``."""

    at: datetime
    entries: int
    head_id: int
    head: str
    signature: str = ""

    def payload(self) -> bytes:
        return json.dumps([ANCHOR_KIND, self.at.astimezone(UTC).isoformat(
            timespec="microseconds"), self.entries, self.head_id, self.head],
            separators=(",", ":")).encode()

    def signed(self, key: Ed25519PrivateKey) -> Anchor:
        return Anchor(self.at, self.entries, self.head_id, self.head,
                      base64.b64encode(key.sign(self.payload())).decode())

    def verifies(self, key: Ed25519PublicKey) -> bool:
        try:
            key.verify(base64.b64decode(self.signature, validate=True), self.payload())
        except (InvalidSignature, ValueError):
            return False
        return True

    def line(self) -> str:
        return json.dumps({"kind": ANCHOR_KIND, "at": self.at.astimezone(UTC).isoformat(
            timespec="microseconds"), "entries": self.entries, "head_id": self.head_id,
            "head": self.head, "signature": self.signature}, separators=(",", ":"))

    @classmethod
    def from_line(cls, line: str) -> Anchor:
        """Parse one line of an anchor file (ValueError when it is not one)."""
        if len(line) > MAX_ANCHOR_LINE:
            raise ValueError("line too long")
        data = json.loads(line)
        if not isinstance(data, dict) or data.get("kind") != ANCHOR_KIND:
            raise ValueError("not an audit anchor")
        entries, head_id = data.get("entries"), data.get("head_id")
        head, signature = data.get("head"), data.get("signature")
        if not (isinstance(entries, int) and isinstance(head_id, int) and entries > 0
                and isinstance(head, str) and len(head) == 64 and isinstance(signature, str)):
            raise ValueError("an anchor's fields are missing or of the wrong type")
        at = datetime.fromisoformat(str(data.get("at")))
        if at.tzinfo is None:
            raise ValueError("an anchor's time has no zone")
        return cls(at, entries, head_id, head, signature)


@dataclass(frozen=True)
class AnchorFile:
    """An append-only file of anchors, one JSON line each."""

    path: Path

    def append(self, anchor: Anchor) -> None:
        """Write one line and make it durable before returning (blocking: run in a thread)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, (anchor.line() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> tuple[list[Anchor], list[int]]:
        """The anchors, and the numbers of lines that are not anchors (blocking)."""
        anchors: list[Anchor] = []
        bad: list[int] = []
        if not self.path.exists():
            return anchors, bad
        with self.path.open(encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    anchors.append(Anchor.from_line(line))
                except ValueError:
                    bad.append(number)
        return anchors, bad


@dataclass
class Anchorer:
    """Writes an anchor when the chain's head has moved since the last one.

    The count is kept incrementally (only entries after the last anchored head are counted),
    so that anchoring a long chain every few seconds stays cheap."""

    file: AnchorFile
    key: Ed25519PrivateKey
    _entries: int = 0
    _head_id: int = 0

    async def anchor(self, session: AsyncSession) -> Anchor | None:
        """Anchor the current head (None when the chain is empty or has not moved)."""
        newer = (await session.execute(
            select(func.count(), func.max(AuditEntry.id))
            .where(AuditEntry.id > self._head_id))).one()
        count, head_id = int(newer[0]), newer[1]
        if not count or head_id is None:
            return None
        head = (await session.execute(select(AuditEntry.hash).where(
            AuditEntry.id == head_id))).scalar_one()
        anchor = Anchor(datetime.now(UTC), self._entries + count, int(head_id),
                        head).signed(self.key)
        await asyncio.to_thread(self.file.append, anchor)
        self._entries, self._head_id = anchor.entries, anchor.head_id
        return anchor


# -- verification -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    entries: int
    broken_at: int | None = None
    reason: str | None = None
    anchors: int = 0
    """Anchors checked (each signed by the desk and matching the chain)."""
    anchored_entries: int = 0
    """Entries covered by the newest good anchor (later ones rest on the chain alone)."""
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "entries": self.entries, "broken_at": self.broken_at,
                "reason": self.reason, "anchors": self.anchors,
                "anchored_entries": self.anchored_entries, "warnings": self.warnings}


async def verify(session: AsyncSession, anchors: Iterable[Anchor] = (),
                 key: Ed25519PublicKey | None = None, *, bad_lines: Sequence[int] = ()
                 ) -> ChainCheck:
    """Walk the whole chain in order, checking each anchor at its head as it passes.

    An anchor whose signature does not verify under ``key`` is a forgery and fails the check
    (a desk's own anchors always verify); so does an anchored head that is missing, at another
    position or with another hash (the chain was cut or rewritten after it was anchored)."""
    by_head: dict[int, list[Anchor]] = {}
    warnings = [f"anchor file line {n} is not an anchor" for n in bad_lines]
    for anchor in anchors:
        if key is not None and not anchor.verifies(key):
            return ChainCheck(False, 0, anchor.head_id, "an anchor's signature does not verify "
                              "(forged, or made with another desk's key)", warnings=warnings)
        by_head.setdefault(anchor.head_id, []).append(anchor)
    prev = GENESIS
    count = 0
    checked = 0
    covered = 0
    result = await session.stream_scalars(select(AuditEntry).order_by(AuditEntry.id))
    async for entry in result:
        count += 1
        if entry.prev_hash != prev:
            return ChainCheck(False, count, entry.id, "an entry before it was removed or changed",
                              checked, covered, warnings)
        at = entry.at if entry.at.tzinfo else entry.at.replace(tzinfo=UTC)
        if entry.hash != entry_hash(prev, at, entry.actor, entry.action, entry.target,
                                    entry.detail):
            return ChainCheck(False, count, entry.id, "this entry was edited", checked, covered,
                              warnings)
        for anchor in by_head.pop(entry.id, ()):
            if anchor.head != entry.hash or anchor.entries != count:
                return ChainCheck(False, count, entry.id, "the chain was rewritten after it was "
                                  f"anchored at {_when(anchor)} (the anchored head differs)",
                                  checked, covered, warnings)
            checked += 1
            covered = max(covered, count)
        prev = entry.hash
    if by_head:
        lost = max((a for group in by_head.values() for a in group), key=lambda a: a.entries)
        return ChainCheck(False, count, lost.head_id, f"entries up to {lost.head_id} were "
                          f"anchored at {_when(lost)} ({lost.entries} entries) and are gone: the "
                          "newest entries were deleted", checked, covered, warnings)
    if count and not checked:
        warnings.append("no anchor covers this chain: deleting its newest entries would not "
                        "be noticed")
    return ChainCheck(True, count, None, None, checked, covered, warnings)


def _when(anchor: Anchor) -> str:
    return anchor.at.astimezone(UTC).isoformat(timespec="seconds")
