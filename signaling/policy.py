"""Queue policy without I/O: the expected wait the hub tells each waiting citizen, the
service-time estimate it is built on, and the token buckets that pace each client's events.

The wait is a small list schedule: every clerk of the centre who handles the matter frees up
at some moment (now if idle and available, after the rest of their current call if busy);
tickets are served in queue order by the clerk who frees up first and can take them, each
taking the matter's service time. That accounts for calls already under way and for clerks
who handle only some matters, which "position / clerks x average" does not.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

MIN_REMAINING_SHARE = 0.3
"""Without enough history: a call already longer than average is expected to last this share
of the average more."""

RECENT_CALLS = 50
"""How many recent call durations per matter the estimate keeps."""

MIN_LONGER = 3
"""Recent calls longer than the one under way needed to use their mean residual time."""

EWMA_WEIGHT = 0.2
"""Weight of one new call's duration in the learned service time."""

MAX_LEARNED_FACTOR = 4.0
"""One call cannot move the estimate beyond this factor of the directory's average."""


@dataclass(frozen=True)
class WaitingTicket:
    ticket_id: str
    matter: str
    offered_to: str | None = None


@dataclass(frozen=True)
class ClerkLoad:
    clerk_id: str
    matters: frozenset[str]
    available: bool
    """Signed in and taking citizens (a clerk away does not count unless in a call)."""
    call_matter: str | None = None
    """The matter of the call under way, if any."""
    call_started_at: float | None = None


def remaining(elapsed: float, average: float, recent: list[float]) -> float:
    """Expected time left of a call ``elapsed`` seconds old: the mean residual time of the
    recent calls that lasted longer (when there are enough of them), else what is left of the
    average, but never less than a share of it (a call past the average is not about to end
    at once)."""
    longer = [d - elapsed for d in recent if d > elapsed]
    if len(longer) >= MIN_LONGER:
        return sum(longer) / len(longer)
    return max(average - elapsed, average * MIN_REMAINING_SHARE)


def expected_waits(waiting: list[WaitingTicket], clerks: list[ClerkLoad],
                   service_s: dict[str, float], now: float,
                   default_service_s: float = 480.0,
                   recent: dict[str, list[float]] | None = None) -> dict[str, int]:
    """Seconds until each waiting ticket (in queue order) is expected to be taken.
    ``recent``: durations of recent completed calls per matter. A ticket whose matter no
    signed-in clerk handles has no entry: nobody serves it now, so no wait is promised."""

    def service(matter: str) -> float:
        return service_s.get(matter, default_service_s)

    free_at: dict[str, float] = {}
    for clerk in clerks:
        if clerk.call_started_at is not None:
            matter = clerk.call_matter or ""
            elapsed = max(0.0, now - clerk.call_started_at)
            free_at[clerk.clerk_id] = remaining(elapsed, service(matter),
                                                (recent or {}).get(matter, []))
        elif clerk.available:
            free_at[clerk.clerk_id] = 0.0
    skills = {c.clerk_id: c.matters for c in clerks if c.clerk_id in free_at}
    signed_in = frozenset().union(*(c.matters for c in clerks))
    out: dict[str, int] = {}
    # a shared virtual clerk per matter nobody can serve now: waits grow with the position
    unserved: dict[str, float] = {}
    heap = [(t, cid) for cid, t in free_at.items()]
    heapq.heapify(heap)
    for ticket in waiting:
        if ticket.matter not in signed_in:
            continue
        duration = service(ticket.matter)
        if ticket.offered_to is not None and ticket.offered_to in free_at:
            # offered: that clerk takes it now, and is busy with it afterwards
            out[ticket.ticket_id] = 0
            free_at[ticket.offered_to] = free_at[ticket.offered_to] + duration
            heap = [(free_at[cid], cid) for _, cid in heap]
            heapq.heapify(heap)
            continue
        skipped: list[tuple[float, str]] = []
        chosen: tuple[float, str] | None = None
        while heap:
            entry = heapq.heappop(heap)
            if ticket.matter in skills[entry[1]]:
                chosen = entry
                break
            skipped.append(entry)
        for entry in skipped:
            heapq.heappush(heap, entry)
        if chosen is None:
            start = unserved.get(ticket.matter, 0.0)
            out[ticket.ticket_id] = round(start + duration)
            unserved[ticket.matter] = start + duration
            continue
        at, clerk_id = chosen
        out[ticket.ticket_id] = round(at)
        free_at[clerk_id] = at + duration
        heapq.heappush(heap, (at + duration, clerk_id))
    return out


def learn_service_time(previous_s: float | None, observed_s: float,
                       directory_s: float) -> float:
    """The service time after one more completed call (an exponentially weighted mean that
    starts from the directory's figure and is bounded around it)."""
    base = directory_s if previous_s is None else previous_s
    bounded = min(max(observed_s, directory_s / MAX_LEARNED_FACTOR),
                  directory_s * MAX_LEARNED_FACTOR)
    return (1 - EWMA_WEIGHT) * base + EWMA_WEIGHT * bounded


@dataclass
class TokenBucket:
    """Events allowed at ``rate`` per second on average, ``burst`` at once."""

    rate: float
    burst: float
    tokens: float = -1.0
    """Tokens left (a new bucket starts full)."""
    at: float = 0.0
    """When ``tokens`` was last brought up to date."""

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until the next token (after a refused ``take``)."""
        return max(0.0, (1.0 - self.tokens) / self.rate)
