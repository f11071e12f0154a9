"""Clerk accounts: argon2id password hashes, roles, centres, disabling."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from remote_desk.models import User

_hasher = PasswordHasher()
_DUMMY = _hasher.hash("not a password of anyone")


class Role(StrEnum):
    CLERK = "clerk"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    ADMIN = "admin"


async def add_user(session: AsyncSession, username: str, display_name: str, password: str,
                   role: Role, centres: list[str]) -> User:
    if len(password) < 10:
        raise ValueError("passwords have at least 10 characters")
    existing = (await session.execute(select(User).where(User.username == username))
                ).scalar_one_or_none()
    if existing is not None:
        raise ValueError(f"user {username} exists")
    user = User(username=username, display_name=display_name,
                password_hash=_hasher.hash(password), role=role.value, centres=centres,
                disabled=False, created_at=datetime.now(UTC))
    session.add(user)
    await session.flush()
    return user


async def set_disabled(session: AsyncSession, username: str, disabled: bool = True) -> User:
    user = (await session.execute(select(User).where(User.username == username))
            ).scalar_one_or_none()
    if user is None:
        raise ValueError(f"no user {username}")
    user.disabled = disabled
    return user


async def authenticate(session: AsyncSession, username: str, password: str) -> User | None:
    """The user if the password is right and the account enabled (same work either way)."""
    user = (await session.execute(select(User).where(User.username == username))
            ).scalar_one_or_none()
    try:
        _hasher.verify(user.password_hash if user else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled:
        return None
    return user
