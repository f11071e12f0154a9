"""The desk's case store (SQLAlchemy 2): users, cases, case files and the audit trail.

SQLite by default (nothing to install), PostgreSQL by URL for production; the schema is
created and changed only by Alembic migrations (``tongban desk db upgrade``).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Date, DateTime, Enum, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from remote_desk.transitions import CaseState


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    """clerk, supervisor, auditor or admin."""
    centres: Mapped[list[str]] = mapped_column(JSON, default=list)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """The kiosk's case id (uploads are idempotent by it)."""
    centre: Mapped[str] = mapped_column(String(64), index=True)
    matter: Mapped[str] = mapped_column(String(64))
    kiosk_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[CaseState] = mapped_column(
        Enum(CaseState, native_enum=False, length=24, validate_strings=True,
             values_callable=lambda states: [s.value for s in states]),
        default=CaseState.RECEIVED)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Raised by every transition: a change is written only over the version it was read at."""
    case_number: Mapped[str | None] = mapped_column(String(32), unique=True)
    """Given by the first 受理 or 容缺受理; unique and consecutive per centre and day."""
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    identity_blob: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 of the encrypted identity record (card fields, verification), never plaintext."""
    decision: Mapped[dict[str, object] | None] = mapped_column(JSON)
    assigned_to: Mapped[str | None] = mapped_column(String(64))
    """The clerk handling the case (the one who decided, or whom a supervisor assigned)."""
    transfer_to: Mapped[str | None] = mapped_column(String(64))
    """The centre a clerk transferred the citizen to: the case follows if the kiosk files it
    there while it is undecided."""
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    files: Mapped[list[CaseFile]] = relationship(back_populates="case",
                                                 cascade="all, delete-orphan")


class PendingTransfer(Base):
    """A clerk transferred a citizen whose case had not arrived yet (the kiosk starts sending
    it as the call starts): the mark waits here and is applied when the case is filed."""

    __tablename__ = "pending_transfers"

    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    to_centre: Mapped[str] = mapped_column(String(64))
    by: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CaseCounter(Base):
    """The last case number given per centre and local day."""

    __tablename__ = "case_counters"

    centre: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)


class CaseFile(Base):
    __tablename__ = "case_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    material: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))

    case: Mapped[Case] = relationship(back_populates="files")


class AuditEntry(Base):
    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(128))
    detail: Mapped[str] = mapped_column(Text, default="")
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
