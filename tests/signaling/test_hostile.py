"""A hostile review of the hub's access and fairness (issue 12), through the real hub with
real socket.io clients: clerk ids are scoped by desk and a clerk acts only at the centres
they are signed in for; a revoked client is cut at once (one process, and two over Redis);
one kiosk cannot flood the queue (one open ticket per case, a cap per kiosk, paced events);
queue updates go only to tickets whose view changed; nobody is promised a wait when nobody
serves their matter any more. All traffic stays on 127.0.0.1; every loop is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web

from remote_desk.hublink import ClerkLink, HubLink
from signaling import policy
from signaling import protocol as p
from signaling.auth import CredentialStore
from signaling.client import HubClient
from signaling.protocol import ClientKind

from .conftest import HubFixture, start_hub
from .test_redis import DIRECTORY, REDIS_URL, _free_port, _start

SETTLE = 0.3


async def _sign_in(desk: HubClient, clerk: str, centre: str = "c1",
                   matters: tuple[str, ...] = ("m1", "m2"), available: bool = True,
                   signed_in: bool = True) -> None:
    await desk.send("clerk.presence", p.ClerkPresence(
        clerk_id=clerk, centre=centre, matters=list(matters), available=available,
        signed_in=signed_in))
    await asyncio.sleep(0.1)


async def _request(kiosk: HubClient, centre: str = "c2", matter: str = "m1",
                   case: str = "case-0001") -> p.TicketUpdate:
    await kiosk.send("ticket.request", p.TicketRequest(centre=centre, matter=matter,
                                                       case_id=case))
    update: p.TicketUpdate = await kiosk.next("ticket.update")
    return update


async def _until(check: object, seconds: float) -> bool:
    """Poll ``check()`` (sync) every 50 ms for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return bool(check())  # type: ignore[operator]


async def _open_tickets(hub: HubFixture | object, kiosk_id: str) -> list[str]:
    store = hub.hub.store  # type: ignore[attr-defined]
    out = []
    for ticket_id in await store.set_members(f"kiosk_tickets:{kiosk_id}"):
        ticket = await store.ticket(ticket_id)
        if ticket is not None and ticket.state is not p.TicketState.CLOSED:
            out.append(ticket.case_id)
    return out


# -- 1. clerk ids are the desk's own; a clerk acts only at their own centres ------------------

async def test_two_desks_may_each_have_a_clerk_of_the_same_id(hub: HubFixture) -> None:
    d1 = await hub.desk("d1", centres=("c1", "c2"))
    d2 = await hub.desk("d2", centres=("c1",))
    await _sign_in(d1, "wang", centre="c1")
    await _sign_in(d2, "wang", centre="c1", available=False)
    assert not d2.drain("hub.error"), "desk d2's wang was refused because of desk d1's wang"
    kiosk = await hub.kiosk("k1")
    ticket = await _request(kiosk, centre="c1")
    offered = await d1.next("ticket.offered")
    assert offered.ticket_id == ticket.ticket_id and offered.clerk_id == "wang"
    # d2's wang is not d1's: the offer is not theirs to take
    await d2.send("ticket.accept", p.TicketAccept(ticket_id=ticket.ticket_id, clerk_id="wang"))
    assert (await d2.next("hub.error")).code == "conflict"
    await d1.send("ticket.accept", p.TicketAccept(ticket_id=ticket.ticket_id, clerk_id="wang"))
    assert (await d1.next("call.start")).ticket_id == ticket.ticket_id
    await asyncio.sleep(SETTLE)
    assert not d2.drain("call.start")


async def test_a_clerk_takes_no_ticket_of_a_centre_they_are_not_signed_in_for(
        hub: HubFixture) -> None:
    desk = await hub.desk("d1", centres=("c1", "c2"))  # the desk serves both centres
    await _sign_in(desk, "clerk-b", centre="c2", matters=("m1",), available=False)
    await _sign_in(desk, "clerk-a", centre="c1", matters=("m1",))
    kiosk = await hub.kiosk("k1")
    ticket = await _request(kiosk, centre="c2")
    await desk.send("ticket.accept", p.TicketAccept(ticket_id=ticket.ticket_id,
                                                    clerk_id="clerk-a"))
    refused = await desk.next("hub.error")
    assert refused.code == "forbidden" and "centre" in refused.message
    await asyncio.sleep(SETTLE)
    assert not kiosk.drain("call.start")
    # signed in at c2 as well, they may; signed out of c2 again, no longer
    await _sign_in(desk, "clerk-a", centre="c2", matters=("m1",), available=False)
    await _sign_in(desk, "clerk-a", centre="c2", matters=(), available=False, signed_in=False)
    await desk.send("ticket.accept", p.TicketAccept(ticket_id=ticket.ticket_id,
                                                    clerk_id="clerk-a"))
    assert (await desk.next("hub.error")).code == "forbidden"
    await _sign_in(desk, "clerk-a", centre="c2", matters=("m1",), available=False)
    await desk.send("ticket.accept", p.TicketAccept(ticket_id=ticket.ticket_id,
                                                    clerk_id="clerk-a"))
    assert (await kiosk.next("call.start")).ticket_id == ticket.ticket_id


async def test_transfer_to_a_named_clerk_reaches_that_clerks_own_desk(hub: HubFixture) -> None:
    d1 = await hub.desk("d1", centres=("c1",))
    d2 = await hub.desk("d2", centres=("c2",))
    await _sign_in(d1, "wang", centre="c1", matters=("m1",))
    await _sign_in(d2, "wang", centre="c2", matters=("m1",), available=False)
    kiosk = await hub.kiosk("k1")
    ticket = await _request(kiosk, centre="c1")
    await d1.next("ticket.offered")
    await d1.send("ticket.accept", p.TicketAccept(ticket_id=ticket.ticket_id, clerk_id="wang"))
    await kiosk.next("call.start")
    # "wang" alone is d1's own wang (busy in this very call): refused
    await d1.send("ticket.transfer", p.TicketTransfer(ticket_id=ticket.ticket_id,
                                                      clerk_id="wang", to_clerk="wang"))
    assert (await d1.next("hub.error")).code == "conflict"
    await d1.send("ticket.transfer", p.TicketTransfer(ticket_id=ticket.ticket_id,
                                                      clerk_id="wang", to_clerk="wang",
                                                      to_desk="d2"))
    offered = await d2.next("ticket.offered")
    assert offered.ticket_id == ticket.ticket_id and offered.clerk_id == "wang"
    moved = await kiosk.next("ticket.update")
    while moved.state is not p.TicketState.OFFERED:
        moved = await kiosk.next("ticket.update")
    assert moved.centre == "c2"
    await asyncio.sleep(SETTLE)
    assert not d1.drain("ticket.offered")


# -- 2. revocation cuts live connections ------------------------------------------------------

async def test_a_revoked_kiosk_is_cut_within_seconds_and_its_ticket_closes(
        hub: HubFixture) -> None:
    desk = await hub.desk("d1", centres=("c2",))
    await desk.send("queue.watch", p.QueueWatch(centre="c2"))
    await _sign_in(desk, "clerk-b", centre="c2", matters=("m1",), available=False)
    kiosk = await hub.kiosk("k1")
    await _request(kiosk)
    # the CLI's way: another process rewrites the credentials file
    CredentialStore(hub.creds.path).revoke("k1")
    assert await _until(lambda: not kiosk.sio.connected, 4.0), "the revoked kiosk is still on"
    await asyncio.sleep(SETTLE)  # the queue's snapshot after the ticket closed
    snapshot = desk.drain("queue.snapshot")[-1]
    assert isinstance(snapshot, p.QueueSnapshot) and snapshot.items == []
    assert await _open_tickets(hub, "k1") == []
    assert desk.sio.connected


async def test_a_revoked_kiosk_cannot_create_a_ticket_even_before_the_periodic_check(
        tmp_path: Path, turn_secret: str) -> None:
    del turn_secret
    hub_, runner, url = await start_hub(tmp_path, revocation_check_s=60.0)
    fixture = HubFixture(hub_, url, hub_.credentials)
    try:
        desk = await fixture.desk("d1", centres=("c2",))
        await _sign_in(desk, "clerk-b", centre="c2", matters=("m1",), available=False)
        kiosk = await fixture.kiosk("k1")
        await asyncio.sleep(1.2)  # the sweeper has run its first check
        CredentialStore(fixture.creds.path).revoke("k1")
        await kiosk.send("ticket.request", p.TicketRequest(centre="c2", matter="m1",
                                                           case_id="case-0001"))
        assert await _until(lambda: not kiosk.sio.connected, 2.0)
        assert await _open_tickets(fixture, "k1") == []
    finally:
        for c in fixture.clients:
            with contextlib.suppress(Exception):
                await c.close()
        await runner.cleanup()


def _redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:  # no server: this machine cannot run the distributed mode
        pytest.skip(f"no Redis at {REDIS_URL} ({type(exc).__name__})")


def _forget_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture
def two_hubs(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """Two hub processes over the local Redis, under keys and a channel of their own."""
    _redis_or_skip()
    (tmp_path / "directory.toml").write_text(DIRECTORY)
    tag = f"tbhostile{os.getpid()}x{secrets.token_hex(3)}"
    ports = [_free_port(), _free_port()]
    procs = [_start(tmp_path, port, tag, f"{tag}:", grace_s=30.0) for port in ports]
    yield f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}", tmp_path
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
    _forget_prefix(f"{tag}:")


@pytest.mark.timeout(60)
async def test_revocation_by_the_cli_cuts_a_kiosk_on_either_of_two_processes(
        two_hubs: tuple[str, str, Path]) -> None:
    url_a, url_b, tmp = two_hubs
    creds = CredentialStore(tmp / "creds.json")
    desk = HubClient(url_b, "d1", ClientKind.DESK,
                     creds.create("d1", ClientKind.DESK, centres=["c1"]), reconnection=False)
    key = creds.create("k1", ClientKind.KIOSK, site="s1")
    kiosk = HubClient(url_a, "k1", ClientKind.KIOSK, key, reconnection=False)
    try:
        await desk.connect()
        await desk.send("queue.watch", p.QueueWatch(centre="c1"))
        await _sign_in(desk, "clerk-a", centre="c1", matters=("m1",), available=False)
        await kiosk.connect()
        await _request(kiosk, centre="c1")
        started = time.monotonic()
        done = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "tongban", "signaling", "credentials", "revoke", "--id", "k1",
            "--file", str(tmp / "creds.json")], capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert await _until(lambda: not kiosk.sio.connected, 5.0), \
            "the revoked kiosk is still connected"
        cut_after = time.monotonic() - started
        assert await _until(lambda: any(
            isinstance(s, p.QueueSnapshot) and not s.items
            for s in desk.drain("queue.snapshot")), 3.0), "the revoked kiosk's ticket stayed"
        again = HubClient(url_b, "k1", ClientKind.KIOSK, key, reconnection=False)
        with pytest.raises(Exception):  # noqa: B017 - socketio's ConnectionError
            await again.connect(timeout=3)
        assert again.refusal is not None and again.refusal["code"] == "revoked"
        assert desk.sio.connected
        assert cut_after < 5.0
    finally:
        for c in (kiosk, desk):
            with contextlib.suppress(Exception):
                await c.close()


# -- 3. one kiosk cannot flood the queue ------------------------------------------------------

@pytest.fixture
async def redis_hub(tmp_path: Path, turn_secret: str) -> AsyncIterator[HubFixture]:
    """One hub on the local Redis (state shared as with several processes), under keys and
    a channel of its own."""
    del turn_secret
    _redis_or_skip()
    tag = f"tbhostile{os.getpid()}x{secrets.token_hex(3)}"
    hub_, runner, url = await start_hub(tmp_path, redis=REDIS_URL, redis_prefix=f"{tag}:",
                                        redis_channel=tag)
    fixture = HubFixture(hub_, url, hub_.credentials)
    yield fixture
    for c in fixture.clients:
        with contextlib.suppress(Exception):
            await c.close()
    await runner.cleanup()
    await asyncio.to_thread(_forget_prefix, f"{tag}:")


async def test_requests_sent_at_once_give_one_ticket_per_case_and_at_most_the_cap(
        redis_hub: HubFixture) -> None:
    desk = await redis_hub.desk("d1", centres=("c2",))
    await _sign_in(desk, "clerk-b", centre="c2", matters=("m1",), available=False)
    kiosk = await redis_hub.kiosk("k1")
    same = [kiosk.send("ticket.request", p.TicketRequest(centre="c2", matter="m1",
                                                         case_id="case-0001"))
            for _ in range(5)]
    await asyncio.gather(*same)
    await asyncio.sleep(1.0)
    assert await _open_tickets(redis_hub, "k1") == ["case-0001"]
    other = await redis_hub.kiosk("k2")
    many = [other.send("ticket.request", p.TicketRequest(centre="c2", matter="m1",
                                                         case_id=f"case-01{i:02d}"))
            for i in range(6)]
    await asyncio.gather(*many)
    await asyncio.sleep(1.0)
    held = await _open_tickets(redis_hub, "k2")
    assert len(held) == redis_hub.hub.config.kiosk_open_tickets, held
    codes = {e.code for e in other.drain("hub.error")}  # type: ignore[attr-defined]
    assert "too_many_tickets" in codes


async def test_a_kiosk_holds_at_most_its_cap_of_open_tickets(hub: HubFixture) -> None:
    desk = await hub.desk("d1", centres=("c2",))
    await _sign_in(desk, "clerk-b", centre="c2", matters=("m1",), available=False)
    kiosk = await hub.kiosk("k1")
    first = await _request(kiosk, case="case-0001")
    await _request(kiosk, case="case-0002")
    await kiosk.send("ticket.request", p.TicketRequest(centre="c2", matter="m1",
                                                       case_id="case-0003"))
    refused = await kiosk.next("hub.error")
    assert refused.code == "too_many_tickets" and kiosk.sio.connected
    assert sorted(await _open_tickets(hub, "k1")) == ["case-0001", "case-0002"]
    await kiosk.send("ticket.cancel", p.TicketCancel(ticket_id=first.ticket_id))
    await asyncio.sleep(SETTLE)
    kiosk.drain("ticket.update")
    third = await _request(kiosk, case="case-0003")
    assert third.state is p.TicketState.WAITING


async def test_events_over_the_rate_get_a_readable_refusal_not_a_disconnect(
        hub: HubFixture) -> None:
    kiosk = await hub.kiosk("k1")
    for n in range(15):
        await kiosk.send("ticket.cancel", p.TicketCancel(ticket_id=f"nosuchticket{n:02d}"))
    errors = []
    for _ in range(15):
        errors.append(await kiosk.next("hub.error"))
    codes = [e.code for e in errors]
    assert "not_found" in codes and "rate_limited" in codes, codes
    limited = next(e for e in errors if e.code == "rate_limited")
    assert limited.retry_after_s is not None and 0 < limited.retry_after_s <= 2.0
    assert kiosk.sio.connected
    await asyncio.sleep(limited.retry_after_s + 0.1)
    await kiosk.send("ticket.cancel", p.TicketCancel(ticket_id="nosuchticket99"))
    assert (await kiosk.next("hub.error")).code == "not_found"  # paced again: accepted


async def test_a_client_that_keeps_flooding_past_its_refusals_is_cut(hub: HubFixture) -> None:
    kiosk = await hub.kiosk("k1")
    for n in range(300):
        if not kiosk.sio.connected:
            break
        await kiosk.send("ticket.cancel", p.TicketCancel(ticket_id=f"nosuchticket{n:03d}"))
    assert await _until(lambda: not kiosk.sio.connected, 3.0), "the flooding kiosk stays on"
    assert hub.hub.metrics.errors.labels("abusive")._value.get() >= 1
    again = await hub.client("k1", ClientKind.KIOSK, connect=False)
    with pytest.raises(Exception):  # noqa: B017 - socketio's ConnectionError
        await again.connect(timeout=3)
    assert again.refusal is not None and again.refusal["code"] == "cooling_down"
    other = await hub.kiosk("k2")  # everyone else is served as before
    assert other.connected


async def test_queue_updates_go_only_to_tickets_whose_view_changed(hub: HubFixture) -> None:
    desk = await hub.desk("d1", centres=("c2",))
    await _sign_in(desk, "clerk-b", centre="c2", matters=("m1",), available=False)
    n = 30
    kiosks = [await hub.kiosk(f"k{i:02d}") for i in range(n)]
    for i, kiosk in enumerate(kiosks):
        first = await _request(kiosk, case=f"case-{i:04d}")
        assert first.position == i + 1
    await asyncio.sleep(SETTLE)
    told = [kiosk.drain("ticket.update") for kiosk in kiosks]
    # a ticket joining the back moves nobody ahead of it: nobody else hears of it
    assert sum(len(t) for t in told) == 0, [len(t) for t in told]
    front = kiosks[0].last["ticket.update"]
    assert isinstance(front, p.TicketUpdate)
    await kiosks[0].send("ticket.cancel", p.TicketCancel(ticket_id=front.ticket_id))
    await asyncio.sleep(SETTLE)
    moved = [kiosk.drain("ticket.update") for kiosk in kiosks[1:]]
    assert [len(m) for m in moved] == [1] * (n - 1)  # every one moved up: one update each
    assert [m[0].position for m in moved] == list(range(1, n))  # type: ignore[attr-defined]


# -- 4. nobody serves the matter any more -----------------------------------------------------

async def test_waiting_citizens_are_told_no_wait_when_the_last_clerk_of_their_matter_leaves(
        hub: HubFixture) -> None:
    desk = await hub.desk("d1", centres=("c2",))
    await _sign_in(desk, "clerk-b", centre="c2", matters=("m1",), available=False)
    await _sign_in(desk, "clerk-c", centre="c2", matters=("m1",), available=False)
    k1, k2 = await hub.kiosk("k1"), await hub.kiosk("k2")
    first = await _request(k1, case="case-0001")
    await _request(k2, case="case-0002")
    assert first.expected_wait_s is not None
    await _sign_in(desk, "clerk-b", centre="c2", matters=(), signed_in=False)
    await asyncio.sleep(SETTLE)
    k1.drain("ticket.update")  # one clerk of the matter is still signed in
    await _sign_in(desk, "clerk-c", centre="c2", matters=(), signed_in=False)
    await asyncio.sleep(SETTLE)
    for kiosk, position in ((k1, 1), (k2, 2)):
        updates = [u for u in kiosk.drain("ticket.update")
                   if isinstance(u, p.TicketUpdate)]
        assert updates, "the citizen was not told that nobody serves the matter now"
        assert updates[-1].expected_wait_s is None and updates[-1].position == position
        assert updates[-1].state is p.TicketState.WAITING
    await _sign_in(desk, "clerk-b", centre="c2", matters=("m1",), available=False)
    await asyncio.sleep(SETTLE)
    back = k1.drain("ticket.update")[-1]
    assert isinstance(back, p.TicketUpdate) and back.expected_wait_s is not None


async def test_a_kiosk_that_resumes_is_told_its_place_again(hub: HubFixture) -> None:
    """Updates go only on change, so a kiosk that was away (and may have missed one) hears
    its place again when it resumes."""
    desk = await hub.desk("d1", centres=("c2",))
    await _sign_in(desk, "clerk-b", centre="c2", matters=("m1",), available=False)
    k1, k2 = await hub.kiosk("k1"), await hub.kiosk("k2")
    first = await _request(k1, case="case-0001")
    second = await _request(k2, case="case-0002")
    await k2.sio.disconnect()
    await k1.send("ticket.cancel", p.TicketCancel(ticket_id=first.ticket_id))
    await asyncio.sleep(SETTLE)  # k2 moved up while away: that update was lost
    welcome = await k2.connect()
    assert welcome.resumed and [t.ticket_id for t in welcome.tickets] == [second.ticket_id]
    again = await k2.next("ticket.update")
    assert again.ticket_id == second.ticket_id and again.position == 1
    assert again.expected_wait_s is not None


# -- the policies behind them, without sockets ------------------------------------------------

def test_token_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = policy.TokenBucket(rate=2.0, burst=3.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == pytest.approx(0.5)
    assert bucket.take(100.5) and not bucket.take(100.5)
    assert [bucket.take(200.0) for _ in range(4)] == [True, True, True, False]  # full again


def test_no_wait_is_promised_for_a_matter_no_signed_in_clerk_handles() -> None:
    waiting = [policy.WaitingTicket("t1", "m1"), policy.WaitingTicket("t2", "m2"),
               policy.WaitingTicket("t3", "m1")]
    away = policy.ClerkLoad("d1/wang", frozenset({"m1"}), available=False)
    waits = policy.expected_waits(waiting, [away], {"m1": 480.0, "m2": 600.0}, now=0.0)
    assert waits == {"t1": 480, "t3": 960}  # m1: someone signed in, away; m2: nobody


def test_what_the_citizen_sees_changes_with_whole_minutes_only() -> None:
    waiting = p.TicketState.WAITING
    assert p.shown(waiting, 2, 290) == p.shown(waiting, 2, 310)  # "about 5 minutes" both
    assert p.shown(waiting, 2, 290) != p.shown(waiting, 2, 340)
    assert p.shown(waiting, 2, 30) == p.shown(waiting, 2, 59) != p.shown(waiting, 2, None)
    assert p.shown(waiting, 2, 300) != p.shown(waiting, 1, 300)


class _Page:
    """Stands in for a clerk's browser socket at the desk: keeps what the desk sends."""

    closed = False

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_json(self, data: dict[str, Any]) -> None:
        self.sent.append(data)


async def test_a_clerks_page_shows_only_their_own_desks_offers_as_theirs(
        hub: HubFixture) -> None:
    """Both desks' ``wang`` watch c1; the ticket is offered to desk d1's: desk d2's page must
    not show it as offered to its own wang (the page and the headless clerk take an offer
    whose offered_to is their user name)."""
    links, pages = [], []
    for desk_id in ("d1", "d2"):
        client = await hub.desk(desk_id, centres=("c1",))
        link = HubLink(client, ["c1"])
        await client.send("queue.watch", p.QueueWatch(centre="c1"))
        page = _Page()
        link.attach(ClerkLink("wang", ["c1"], cast(web.WebSocketResponse, page)))
        links.append(link)
        pages.append(page)
    await _sign_in(links[0].client, "wang", centre="c1", matters=("m1",))
    await _sign_in(links[1].client, "wang", centre="c1", matters=("m1",), available=False)
    kiosk = await hub.kiosk("k1")
    await _request(kiosk, centre="c1")
    await asyncio.sleep(SETTLE)
    shown = []
    for page in pages:
        snapshot = [m["data"] for m in page.sent if m["event"] == "queue.snapshot"][-1]
        shown.append([(i["state"], i["offered_to"]) for i in snapshot["items"]])
    assert shown == [[("offered", "wang")], [("offered", None)]]


async def test_a_clerk_signing_in_at_two_centres_at_once_keeps_both(
        redis_hub: HubFixture) -> None:
    """Each presence runs under its centre's lock; the clerk's one record spans both centres,
    so without the clerk's own lock the second write lost the first centre (over Redis a
    read and its write are apart): the citizens of that centre were told nobody serves."""
    desk = await redis_hub.desk("d1", centres=("c1", "c2"))
    for _ in range(5):
        await asyncio.gather(*(desk.send("clerk.presence", p.ClerkPresence(
            clerk_id="clerk-a", centre=centre, matters=["m1"], available=True))
            for centre in ("c1", "c2")))
        await asyncio.sleep(SETTLE)
        clerk = await redis_hub.hub.store.clerk("d1/clerk-a")
        assert clerk is not None and sorted(clerk.centres) == ["c1", "c2"], clerk
        for centre in ("c1", "c2"):
            await desk.send("clerk.presence", p.ClerkPresence(
                clerk_id="clerk-a", centre=centre, matters=["m1"], available=False,
                signed_in=False))
        await asyncio.sleep(SETTLE)
        assert await redis_hub.hub.store.clerk("d1/clerk-a") is None
