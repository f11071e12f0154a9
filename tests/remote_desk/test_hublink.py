"""A clerk's browser socket on the desk, relayed over the desk's one hub connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from remote_desk.app import DeskApp
from remote_desk.blobs import new_key, parse_key
from remote_desk.config import DeskConfig
from remote_desk.db import upgrade
from remote_desk.hublink import HubLink
from remote_desk.users import Role, add_user
from signaling import protocol as p
from signaling.client import HubClient
from signaling.protocol import ClientKind
from tests.remote_desk.deskkit import Desk, package, upload
from tests.signaling.conftest import start_hub

PASSWORD = "correct horse battery"


class Browser:
    """A clerk's browser: logged in, with the desk's WebSocket open."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse
                 ) -> None:
        self.session = session
        self.ws = ws

    async def send(self, event: str, data: dict[str, Any]) -> None:
        await self.ws.send_json({"event": event, "data": data})

    async def next(self, event: str, timeout: float = 5) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            while True:
                msg = await self.ws.receive_json()
                if msg["event"] == event:
                    return msg["data"]  # type: ignore[no-any-return]
        return await asyncio.wait_for(wait(), timeout)

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[
        tuple[str, DeskApp, HubClient]]:
    monkeypatch.setenv("TB_TEST_TURN_SECRET", "secret")
    hub, runner, hub_url = await start_hub(tmp_path)
    desk_key = hub.credentials.create("desk-1", ClientKind.DESK, centres=["c1", "c2"])
    kiosk_key = hub.credentials.create("k1", ClientKind.KIOSK, site="s1")
    url = f"sqlite:///{tmp_path / 'desk.db'}"
    await asyncio.to_thread(upgrade, url)
    desk = DeskApp(DeskConfig(database=url, files_dir=tmp_path / "files", centres=["c1", "c2"],
                              kiosk_credentials=tmp_path / "creds.json"),
                   files_key=parse_key(new_key()))
    async with desk.db() as db:
        await add_user(db, "clerk-a", "甲", PASSWORD, Role.CLERK, ["c1"])
        await add_user(db, "clerk-b", "乙", PASSWORD, Role.CLERK, ["c2"])
        await db.commit()
    desk.hub = HubLink(HubClient(hub_url, "desk-1", ClientKind.DESK, desk_key,
                                 reconnection=False), ["c1", "c2"])
    await desk.hub.start()
    server = TestServer(desk.app, host="127.0.0.1")
    await server.start_server()
    kiosk = HubClient(hub_url, "k1", ClientKind.KIOSK, kiosk_key, reconnection=False)
    await kiosk.connect()
    yield str(server.make_url("")).rstrip("/"), desk, kiosk
    with contextlib.suppress(Exception):
        await kiosk.close()
    await server.close()
    await runner.cleanup()


async def _browser(base: str, user: str) -> Browser:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post(f"{base}/api/login",
                            json={"username": user, "password": PASSWORD}) as r:
        csrf = (await r.json())["csrf"]
    ws = await session.ws_connect(f"{base}/ws?csrf={csrf}")
    return Browser(session, ws)


async def test_a_clerk_takes_a_call_through_the_desk(world: tuple[str, DeskApp, HubClient]
                                                    ) -> None:
    base, _, kiosk = world
    clerk = await _browser(base, "clerk-a")
    await clerk.send("clerk.presence", {"v": 1, "clerk_id": "clerk-a", "centre": "c1",
                                        "matters": ["m1"], "available": True})
    await asyncio.sleep(0.2)
    await kiosk.send("ticket.request", p.TicketRequest(centre="c1", matter="m1",
                                                       case_id="case-0001"))
    offered = await clerk.next("ticket.offered")
    await clerk.send("ticket.accept", {"v": 1, "ticket_id": offered["ticket_id"],
                                       "clerk_id": "clerk-a"})
    start = await clerk.next("call.start")
    assert start["role"] == "answerer"
    kiosk_start = await kiosk.next("call.start")
    await kiosk.send("call.offer", p.CallOffer(call_id=kiosk_start.call_id, sdp="v=0 o"))
    assert (await clerk.next("call.offer"))["sdp"] == "v=0 o"
    await clerk.send("call.answer", {"v": 1, "call_id": start["call_id"], "sdp": "v=0 a"})
    assert (await kiosk.next("call.answer")).sdp == "v=0 a"
    await clerk.close()


async def test_another_centres_clerk_cannot_reach_the_call(
        world: tuple[str, DeskApp, HubClient]) -> None:
    base, _, kiosk = world
    clerk = await _browser(base, "clerk-a")
    await clerk.send("clerk.presence", {"v": 1, "clerk_id": "clerk-a", "centre": "c1",
                                        "matters": ["m1"], "available": True})
    await asyncio.sleep(0.2)
    await kiosk.send("ticket.request", p.TicketRequest(centre="c1", matter="m1",
                                                       case_id="case-0001"))
    offered = await clerk.next("ticket.offered")
    await clerk.send("ticket.accept", {"v": 1, "ticket_id": offered["ticket_id"],
                                       "clerk_id": "clerk-a"})
    start = await clerk.next("call.start")
    other = await _browser(base, "clerk-b")
    await other.send("clerk.presence", {"v": 1, "clerk_id": "clerk-b", "centre": "c1",
                                        "matters": ["m1"], "available": True})
    assert "not a centre" in (await other.next("desk.error"))["message"]
    await other.send("call.answer", {"v": 1, "call_id": start["call_id"], "sdp": "evil"})
    assert (await other.next("desk.error"))["message"] == "not your call"
    await other.send("ticket.accept", {"v": 1, "ticket_id": offered["ticket_id"],
                                       "clerk_id": "clerk-a"})
    assert "themself" in (await other.next("desk.error"))["message"]
    await other.send("hub.steal", {})
    assert "unknown event" in (await other.next("desk.error"))["message"]
    await asyncio.sleep(0.2)
    assert not kiosk.drain("call.answer")
    await other.close()
    await clerk.close()


async def test_the_socket_needs_the_session_and_its_csrf_token(
        world: tuple[str, DeskApp, HubClient]) -> None:
    base, _, _ = world
    async with aiohttp.ClientSession() as anonymous:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await anonymous.ws_connect(f"{base}/ws?csrf=x")
        assert err.value.status == 401
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post(f"{base}/api/login",
                            json={"username": "clerk-a", "password": PASSWORD}):
        pass
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await session.ws_connect(f"{base}/ws?csrf=wrong")
    assert err.value.status == 403
    await session.close()


async def test_a_case_follows_its_citizen_transferred_to_another_centre(
        world: tuple[str, DeskApp, HubClient]) -> None:
    """Through the real hub: clerk-a (c1) transfers the citizen to c2 during the call; the
    kiosk then files the case at c2 and clerk-b (c2) has it, under the same case id."""
    base, desk, _ = world
    assert desk.hub is not None
    key = desk.kiosks.create("k2", ClientKind.KIOSK, site="s1")  # the hub's file too
    kiosk = HubClient(desk.hub.client.url, "k2", ClientKind.KIOSK, key, reconnection=False)
    await kiosk.connect()
    desk_view = Desk(base, desk, key)
    assert (await upload(desk_view, package(key, kiosk="k2", centre="c1"),
                         kiosk="k2"))[0] == 201
    clerk = await _browser(base, "clerk-a")
    await clerk.send("clerk.presence", {"v": 1, "clerk_id": "clerk-a", "centre": "c1",
                                        "matters": ["m1"], "available": True})
    await asyncio.sleep(0.2)
    await kiosk.send("ticket.request", p.TicketRequest(centre="c1", matter="m1",
                                                       case_id="case-0001"))
    offered = await clerk.next("ticket.offered")
    await clerk.send("ticket.accept", {"v": 1, "ticket_id": offered["ticket_id"],
                                       "clerk_id": "clerk-a"})
    await clerk.next("call.start")
    other = await _browser(base, "clerk-b")  # someone at c2 to transfer to
    await other.send("clerk.presence", {"v": 1, "clerk_id": "clerk-b", "centre": "c2",
                                        "matters": ["m1"], "available": False})
    await asyncio.sleep(0.2)
    await clerk.send("ticket.transfer", {"v": 1, "ticket_id": offered["ticket_id"],
                                         "clerk_id": "clerk-a", "to_centre": "c2"})
    await kiosk.next("call.ended")
    status, body = await upload(desk_view, package(key, kiosk="k2", centre="c2"), kiosk="k2")
    assert (status, body["status"]) == (201, "transferred")
    async with other.session.get(f"{base}/api/cases/case-0001") as r:
        assert r.status == 200 and (await r.json())["centre"] == "c2"
    await other.close()
    await clerk.close()
    await kiosk.close()
