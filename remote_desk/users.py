"""Clerk accounts: argon2id password hashes, roles, centres, disabling; password checks off the
event loop on a small pool; the login rate limits.

Login lockout rule (``LoginLimiter``): failures are counted in a sliding window
(``login_window_seconds``) per *user name at one address* and per *address*. A name that
failed ``login_attempts`` times from address A is locked at A only; an address that failed
``login_address_attempts`` times, whatever the names (password spraying), is locked for every
name. While locked, every attempt from there is answered 429 with the seconds until the next
one is counted, without checking the password (a right password gets the same answer: no
oracle, no work). Nothing ever locks a name everywhere, so failures sent from A cannot keep
the clerk out from B; guessing one name from many addresses is bounded by the per-address
limits and the cost of argon2.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from enum import StrEnum
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from remote_desk.models import User

K = TypeVar("K", str, tuple[str, str])

_hasher = PasswordHasher()
_DUMMY = _hasher.hash("not a password of anyone")


class Role(StrEnum):
    CLERK = "clerk"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    ADMIN = "admin"


CITIZEN_FACING = frozenset({Role.CLERK, Role.SUPERVISOR})
"""Roles that serve citizens: only they may open the call socket (``/ws``) and decide."""


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


class ChecksBusy(Exception):
    """More password checks are waiting than the desk queues: try again shortly."""


PASSWORD_THREAD_NICENESS = 10
"""Password threads yield the CPU to the event loop (Linux nice is per thread and inherited
by argon2's own lane threads)."""


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PASSWORD_THREAD_NICENESS)


class PasswordChecks:
    """argon2 verifications on a few worker threads (argon2-cffi releases the GIL), never on
    the event loop; at most ``waiting`` more wait for a worker, the rest are refused at once."""

    def __init__(self, workers: int = 2, waiting: int = 16) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2",
                                        initializer=_lower_priority)
        self._slots = asyncio.Semaphore(workers + waiting)

    @staticmethod
    def _verify(password_hash: str, password: str) -> bool:
        try:
            return bool(_hasher.verify(password_hash, password))
        except (VerificationError, InvalidHashError):
            return False

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches (a missing account costs the same work)."""
        if self._slots.locked():
            raise ChecksBusy("too many password checks at once")
        async with self._slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self._verify,
                                              password_hash or _DUMMY, password)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def authenticate(session: AsyncSession, username: str, password: str,
                       checks: PasswordChecks) -> User | None:
    """The user if the password is right and the account enabled (same work either way)."""
    user = (await session.execute(select(User).where(User.username == username))
            ).scalar_one_or_none()
    if not await checks.verify(user.password_hash if user else None, password):
        return None
    if user is None or user.disabled:
        return None
    return user


class LoginLimiter:
    """Failed logins per (user name, address) and per address in a sliding window; see the
    module docstring for the rule. No I/O: the clock is injected."""

    def __init__(self, per_name: int, per_address: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_name = per_name
        self.per_address = per_address
        self.window_s = window_s
        self.clock = clock
        self._pairs: dict[tuple[str, str], list[float]] = {}
        self._addresses: dict[str, list[float]] = {}

    def _recent(self, table: dict[K, list[float]], key: K, now: float) -> list[float]:
        times = [t for t in table.get(key, []) if now - t < self.window_s]
        if times:
            table[key] = times
        else:
            table.pop(key, None)
        return times

    def _wait(self, times: list[float], limit: int, now: float) -> float:
        if len(times) < limit:
            return 0.0
        return max(0.0, times[len(times) - limit] + self.window_s - now)

    def retry_after(self, username: str, address: str) -> float:
        """Seconds until an attempt of ``username`` from ``address`` counts again (0: now)."""
        now = self.clock()
        return max(self._wait(self._recent(self._pairs, (username, address), now),
                              self.per_name, now),
                   self._wait(self._recent(self._addresses, address, now),
                              self.per_address, now))

    def attempt(self, username: str, address: str) -> float:
        """Count an attempt as failed before its password is checked (so that attempts in
        flight at once cannot pass the limit); ``succeeded`` takes it back. Returns its time."""
        now = self.clock()
        self._pairs.setdefault((username, address), []).append(now)
        self._addresses.setdefault(address, []).append(now)
        return now

    def succeeded(self, username: str, address: str, at: float) -> None:
        """The attempt at ``at`` was right: the name's failures at this address are forgotten
        and the attempt leaves the address's count (other names' failures stay)."""
        self._pairs.pop((username, address), None)
        self._take_back(self._addresses, address, at)

    def withdraw(self, username: str, address: str, at: float) -> None:
        """The attempt at ``at`` was never checked (the desk was busy): it does not count."""
        self._take_back(self._pairs, (username, address), at)
        self._take_back(self._addresses, address, at)

    @staticmethod
    def _take_back(table: dict[K, list[float]], key: K, at: float) -> None:
        times = table.get(key, [])
        if at in times:
            times.remove(at)
        if not times:
            table.pop(key, None)

    def prune(self) -> None:
        """Forget failures older than the window (bounded memory under spraying)."""
        now = self.clock()
        for key in list(self._pairs):
            self._recent(self._pairs, key, now)
        for address in list(self._addresses):
            self._recent(self._addresses, address, now)
