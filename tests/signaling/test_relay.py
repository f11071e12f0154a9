"""The relay of call events between two hub processes over the local Redis: every message
arrives, in order, and a call's party changes (restart, transfer, hang-up) route correctly
with the hub's call-route cache."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from signaling import protocol as p
from signaling.auth import CredentialStore
from signaling.client import HubClient
from signaling.protocol import ClientKind
from signaling.relay import CallRoutes, HubRedisManager, Route
from signaling.store import Call, MemoryStore
from tests.signaling.conftest import HubFixture, start_hub
from tests.signaling.test_calls import _in_call
from tests.signaling.test_redis import DIRECTORY, REDIS_URL, _drop_prefix, _redis_or_skip
from tests.signaling.test_redis import _start as start_hub_process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Region:
    """Two hub processes sharing one Redis under a key prefix and channel of their own."""

    tmp: Path
    urls: list[str]
    procs: list[subprocess.Popen[bytes]]
    clients: list[HubClient] = field(default_factory=list)

    def client(self, where: int, client_id: str, kind: ClientKind, **kw: object) -> HubClient:
        key = CredentialStore(self.tmp / "creds.json").create(client_id, kind,
                                                              **kw)  # type: ignore[arg-type]
        made = HubClient(self.urls[where], client_id, kind, key, reconnection=False)
        self.clients.append(made)
        return made


def _start(tmp: Path, port: int, channel: str, prefix: str) -> subprocess.Popen[bytes]:
    # the relay itself is under test: the per-client pacing (tests/signaling/test_hostile.py)
    # is opened wide so that a burst is relayed, not refused
    return start_hub_process(tmp, port, channel, prefix, log=tmp / f"hub-{port}.log",
                             extra='kiosk_call_events = {rate = 10000, burst = 10000}\n'
                                   'kiosk_queue_events = {rate = 1000, burst = 1000}\n')


@pytest.fixture
def region_procs(tmp_path: Path) -> Iterator[tuple[Path, list[str],
                                                    list[subprocess.Popen[bytes]]]]:
    _redis_or_skip()
    (tmp_path / "directory.toml").write_text(DIRECTORY)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    prefix = f"tbtest-relay-{tag}:"
    ports = [_free_port(), _free_port()]
    procs = [_start(tmp_path, port, f"tongban-relay-{tag}", prefix) for port in ports]
    yield tmp_path, [f"http://127.0.0.1:{port}" for port in ports], procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
    _drop_prefix(prefix)


@pytest.fixture
async def region(region_procs: tuple[Path, list[str], list[subprocess.Popen[bytes]]]
                 ) -> AsyncIterator[Region]:
    tmp, urls, procs = region_procs
    made = Region(tmp, urls, procs)
    yield made
    for c in made.clients:
        with contextlib.suppress(Exception):
            await c.close()


async def _call(region: Region) -> tuple[HubClient, HubClient, str, str]:
    """A kiosk on process 0 in a call with a clerk whose desk is on process 1."""
    desk = region.client(1, "d1", ClientKind.DESK, centres=["c1"])
    kiosk = region.client(0, "k1", ClientKind.KIOSK, site="s1")
    await desk.connect()
    await kiosk.connect()
    await desk.send("clerk.presence", p.ClerkPresence(clerk_id="clerk-a", centre="c1",
                                                      matters=["m1"], available=True))
    await asyncio.sleep(0.2)
    await kiosk.send("ticket.request", p.TicketRequest(centre="c1", matter="m1",
                                                       case_id="case-0001"))
    offered = await desk.next("ticket.offered")
    await desk.send("ticket.accept", p.TicketAccept(ticket_id=offered.ticket_id,
                                                    clerk_id="clerk-a"))
    start = await kiosk.next("call.start")
    assert (await desk.next("call.start")).call_id == start.call_id
    return kiosk, desk, start.call_id, offered.ticket_id


async def _collect(client: HubClient, event: str, count: int, timeout: float = 20.0
                   ) -> list[p.Message]:
    got = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(got) < count:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        with contextlib.suppress(TimeoutError):
            got.append(await client.next(event, left))
    return got


async def _refused(client: HubClient, sender: HubClient, other: HubClient, call_id: str
                   ) -> None:
    """``sender``'s relay on ``call_id`` is refused and ``other`` hears nothing of it."""
    other.drain("call.ice")
    await sender.send("call.ice", p.CallIce(call_id=call_id, candidate="candidate:late"))
    error = await client.next("hub.error")
    assert (error.code, error.event) == ("forbidden", "call.ice")
    await asyncio.sleep(0.3)
    assert [m for m in other.drain("call.ice") if isinstance(m, p.CallIce)
            and m.candidate == "candidate:late"] == []


async def _back_in_queue(kiosk: HubClient) -> None:
    """Wait for the ticket.update that follows a hang-up: the ticket waits again."""
    while True:
        update = await kiosk.next("ticket.update")
        if update.state is p.TicketState.WAITING:
            return


async def test_a_burst_both_ways_across_two_processes_arrives_whole_and_in_order(
        region: Region) -> None:
    kiosk, desk, call_id, _ = await _call(region)
    count = 600

    async def burst(sender: HubClient, side: str) -> None:
        for n in range(count):
            await sender.send("call.ice", p.CallIce(call_id=call_id,
                                                    candidate=f"candidate:{side} {n}"))

    await asyncio.gather(burst(kiosk, "kiosk"), burst(desk, "desk"))
    at_desk = await _collect(desk, "call.ice", count)
    at_kiosk = await _collect(kiosk, "call.ice", count)
    assert [m.candidate for m in at_desk] == [f"candidate:kiosk {n}" for n in range(count)]
    assert [m.candidate for m in at_kiosk] == [f"candidate:desk {n}" for n in range(count)]
    assert kiosk.drain("hub.error") == [] and desk.drain("hub.error") == []


async def test_restart_transfer_and_hang_up_route_correctly_after_the_route_is_cached(
        region: Region) -> None:
    kiosk, desk, call_id, ticket_id = await _call(region)
    for n in range(20):  # the route of this call is cached on both processes
        await kiosk.send("call.ice", p.CallIce(call_id=call_id, candidate=f"candidate:{n}"))
        await desk.send("call.ice", p.CallIce(call_id=call_id, candidate=f"candidate:{n}"))
    assert len(await _collect(desk, "call.ice", 20)) == 20
    assert len(await _collect(kiosk, "call.ice", 20)) == 20

    # restart: the old call id is dead at once, the new one routes
    await kiosk.send("call.restart", p.CallRestart(call_id=call_id))
    assert (await desk.next("call.ended")).reason is p.CallEndReason.RESTARTED
    assert (await kiosk.next("call.ended")).reason is p.CallEndReason.RESTARTED
    fresh = (await kiosk.next("call.start")).call_id
    assert (await desk.next("call.start")).call_id == fresh != call_id
    await _refused(kiosk, kiosk, desk, call_id)
    await _refused(desk, desk, kiosk, call_id)
    await kiosk.send("call.ice", p.CallIce(call_id=fresh, candidate="candidate:fresh"))
    assert (await desk.next("call.ice")).candidate == "candidate:fresh"

    # transfer to a clerk of another desk, on the kiosk's process: the route follows
    other = region.client(0, "d2", ClientKind.DESK, centres=["c1"])
    await other.connect()
    await other.send("clerk.presence", p.ClerkPresence(clerk_id="clerk-b", centre="c1",
                                                       matters=["m1"], available=True))
    await asyncio.sleep(0.2)
    await desk.send("ticket.transfer", p.TicketTransfer(ticket_id=ticket_id,
                                                        clerk_id="clerk-a",
                                                        to_clerk="clerk-b", to_desk="d2"))
    assert (await kiosk.next("call.ended")).reason is p.CallEndReason.TRANSFERRED
    offered = await other.next("ticket.offered")
    await other.send("ticket.accept", p.TicketAccept(ticket_id=offered.ticket_id,
                                                     clerk_id="clerk-b"))
    moved = (await kiosk.next("call.start")).call_id
    assert (await other.next("call.start")).call_id == moved
    await _refused(kiosk, kiosk, desk, fresh)
    await _refused(desk, desk, kiosk, fresh)
    desk.drain("call.ice")
    await kiosk.send("call.ice", p.CallIce(call_id=moved, candidate="candidate:moved"))
    assert (await other.next("call.ice")).candidate == "candidate:moved"
    await asyncio.sleep(0.3)
    assert desk.drain("call.ice") == []

    # hang-up by the clerk (same process as the kiosk): once the kiosk is back in the queue,
    # its relay on the ended call is refused
    await kiosk.send("call.ice", p.CallIce(call_id=moved, candidate="candidate:warm"))
    assert (await other.next("call.ice")).candidate == "candidate:warm"
    kiosk.drain("ticket.update")
    await other.send("call.end", p.CallEnd(call_id=moved, reason="hangup"))
    await _back_in_queue(kiosk)
    await _refused(kiosk, kiosk, other, moved)


async def test_a_hang_up_on_one_process_stops_the_relay_on_the_other_at_once(
        region: Region) -> None:
    kiosk, desk, call_id, _ = await _call(region)
    for n in range(10):
        await kiosk.send("call.ice", p.CallIce(call_id=call_id, candidate=f"candidate:{n}"))
    assert len(await _collect(desk, "call.ice", 10)) == 10
    kiosk.drain("ticket.update")
    await desk.send("call.end", p.CallEnd(call_id=call_id, reason="hangup"))
    assert (await kiosk.next("call.ended")).call_id == call_id
    # the hub tells the kiosk it is queued again after it dropped the call: by then the
    # kiosk's process (not the one that ended the call) refuses the old call id
    await _back_in_queue(kiosk)
    await kiosk.send("call.ice", p.CallIce(call_id=call_id, candidate="candidate:late"))
    error = await kiosk.next("hub.error")
    assert (error.code, error.event) == ("forbidden", "call.ice")


class SlowStore(MemoryStore):
    """A memory store whose call reads wait until the test lets them finish."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def call(self, call_id: str) -> Call | None:
        await self.release.wait()
        return await super().call(call_id)


async def test_a_route_invalidated_while_it_is_read_is_used_once_but_not_kept() -> None:
    store = SlowStore()
    await store.save(Call(id="c1", ticket_id="t1", kiosk_id="k1", desk_id="d1",
                          clerk_id="clerk-a", started_at=0.0))
    routes = CallRoutes(store)
    routes.trust()
    reading = asyncio.create_task(routes.resolve("c1"))
    await asyncio.sleep(0)
    routes.forget("c1")  # Redis: the record changed while it was in flight
    store.release.set()
    assert (await reading) == Route("k1", "d1")
    assert routes.cached("c1") is None
    assert await routes.resolve("c1") == Route("k1", "d1")  # a clean read is kept
    assert routes.cached("c1") == Route("k1", "d1")
    routes.distrust()  # the listener is lost: nothing is kept or served from memory
    assert routes.cached("c1") is None
    assert await routes.resolve("c1") == Route("k1", "d1")
    assert routes.cached("c1") is None


async def test_a_lost_listener_forgets_every_route_and_the_relay_still_routes(
        tmp_path: Path, turn_secret: str) -> None:
    del turn_secret
    _redis_or_skip()
    tag = secrets.token_hex(4)
    prefix = f"tbtest-relay-{os.getpid()}-{tag}:"
    hub, runner, url = await start_hub(tmp_path, redis=REDIS_URL, redis_prefix=prefix,
                                       redis_channel=f"tongban-relay-{tag}")
    fixture = HubFixture(hub, url, hub.credentials)
    try:
        kiosk, desk, start = await _in_call(fixture)
        await kiosk.send("call.ice", p.CallIce(call_id=start.call_id, candidate="candidate:1"))
        assert (await desk.next("call.ice")).candidate == "candidate:1"
        assert hub.routes.cached(start.call_id) is not None
        manager = hub.sio.manager
        assert isinstance(manager, HubRedisManager) and manager.listener_id is not None
        import redis.asyncio as aioredis

        admin = aioredis.Redis.from_url(REDIS_URL)
        lost = manager.listener_id
        await admin.client_kill_filter(_id=lost)
        deadline = asyncio.get_running_loop().time() + 10
        while manager.listener_id == lost and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert manager.listener_id != lost  # listening again, on a new connection
        assert hub.routes.cached(start.call_id) is None
        await kiosk.send("call.ice", p.CallIce(call_id=start.call_id, candidate="candidate:2"))
        assert (await desk.next("call.ice")).candidate == "candidate:2"
        kiosk.drain("ticket.update")
        await desk.send("call.end", p.CallEnd(call_id=start.call_id, reason="hangup"))
        assert (await kiosk.next("call.ended")).call_id == start.call_id
        await _back_in_queue(kiosk)
        await kiosk.send("call.ice", p.CallIce(call_id=start.call_id, candidate="candidate:3"))
        assert (await kiosk.next("hub.error")).code == "forbidden"
        await admin.aclose()
    finally:
        for c in fixture.clients:
            with contextlib.suppress(Exception):
                await c.close()
        await runner.cleanup()
        _drop_prefix(prefix)
