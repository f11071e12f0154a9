"""The kiosk's session fed with what the real hub sends (not events written by hand): a kiosk
client and a desk client on a hub on loopback, every hub message turned into the session's
event by ``kiosk.events.from_hub``, as the kiosk service does."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kiosk import events as ev
from kiosk.catalogue import Catalogue, Centre, Material, Matter
from kiosk.session import Action, Session, State, TransitionError
from signaling import protocol as p
from signaling.client import HubClient
from tests.signaling.conftest import HubFixture, start_hub

CATALOGUE = Catalogue(
    centres=[Centre(code="c1", name="自动中心", province="浙江"),
             Centre(code="c2", name="挑选中心", province="江苏"),
             Centre(code="c3", name="关门中心", province="浙江")],
    matters=[Matter(code="m1", name="异地长期居住人员备案", centres=["c1", "c2", "c3"],
                    materials=[Material(code="id_card", name="身份证", key=True)])])


@dataclass
class Citizen:
    """A session at the request step, fed by the kiosk's hub client."""

    client: HubClient
    session: Session
    case_id: str
    actions: list[Action] = field(default_factory=list)

    async def on_hub(self, event: str, message: p.Message) -> None:
        del event
        call = self.session.context.call
        mapped = ev.from_hub(message, case_id=self.case_id,
                             call_id=call.call_id if call else None)
        if mapped is not None:
            # the service ignores what the state does not take; so does this
            with contextlib.suppress(TransitionError):
                self.actions += self.session.handle(mapped, time.monotonic())

    async def request(self, centre: str) -> None:
        await self.client.send("ticket.request", p.TicketRequest(
            centre=centre, matter="m1", case_id=self.case_id))

    async def reaches(self, state: State, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.session.state is not state:
            assert time.monotonic() < deadline, f"stuck at {self.session.state.value}"
            await asyncio.sleep(0.02)


def _at_request(centre: str) -> Session:
    s = Session(CATALOGUE)
    for event in (ev.Touch(), ev.ChooseCentre(centre=centre), ev.ChooseMatter(matter="m1"),
                  ev.CardRead(card={}), ev.FaceResult(decision="match", liveness=True),
                  ev.Captured(material="id_card"), ev.Done()):
        s.handle(event, 1)
    assert s.state is State.REQUEST
    return s


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[HubFixture]:
    """The signaling tests' hub and directory (c1 auto, c2 pick, c3 closed)."""
    server, runner, url = await start_hub(tmp_path)
    fixture = HubFixture(server, url, server.credentials)
    yield fixture
    for client in fixture.clients:
        with contextlib.suppress(Exception):
            await client.close()
    await runner.cleanup()


@pytest.fixture
async def citizens(hub: HubFixture) -> AsyncIterator[dict[str, Citizen]]:
    out = {}
    for n, centre in enumerate(("c1", "c1", "c2", "c3"), 1):
        client = await hub.kiosk(f"k{n}")
        citizen = Citizen(client, _at_request(centre), f"case-000{n}")
        client.listener = citizen.on_hub
        out[f"k{n}"] = citizen
    yield out


async def _sign_in(desk: HubClient, clerk: str = "clerk-a") -> None:
    for centre in ("c1", "c2"):
        await desk.send("clerk.presence", p.ClerkPresence(
            clerk_id=clerk, centre=centre, matters=["m1"], available=True))
    await asyncio.sleep(0.1)


async def test_pick_centre_the_citizen_waits_then_the_clerk_picks(
        hub: HubFixture, citizens: dict[str, Citizen]) -> None:
    desk = await hub.desk()
    await _sign_in(desk)
    citizen = citizens["k3"]
    await citizen.request("c2")
    await citizen.reaches(State.WAITING)  # the bug: it stayed at the request step
    assert citizen.session.screen()["position"] == 1
    ticket = citizen.session.context.ticket
    assert ticket is not None
    await desk.send("ticket.accept", p.TicketAccept(ticket_id=ticket.ticket_id,
                                                    clerk_id="clerk-a"))
    await citizen.reaches(State.IN_CALL)
    assert Action.START_CALL in citizen.actions


async def test_busy_clerk_second_citizen_told_position_and_wait_then_completed(
        hub: HubFixture, citizens: dict[str, Citizen]) -> None:
    desk = await hub.desk()
    await _sign_in(desk)
    first, second = citizens["k1"], citizens["k2"]
    await first.request("c1")
    offered = await desk.next("ticket.offered")
    await desk.send("ticket.accept", p.TicketAccept(ticket_id=offered.ticket_id,
                                                    clerk_id="clerk-a"))
    await first.reaches(State.IN_CALL)
    await second.request("c1")
    await second.reaches(State.WAITING)
    screen = second.session.screen()
    assert screen["position"] == 1 and screen["expected_wait_s"] > 0  # the other bug
    assert screen["position_words"] == "下一位就是您" and "分钟" in screen["wait_words"]
    call = first.session.context.call
    assert call is not None
    await desk.send("call.end", p.CallEnd(call_id=call.call_id, reason="completed"))
    await first.reaches(State.RESULT)
    assert first.session.screen()["receipt"]["kind"] == "ended"
    await second.reaches(State.WAITING)
    await asyncio.sleep(0.3)
    assert second.session.screen()["offered"] is True  # the clerk is free: offered next


async def test_transfer_moves_the_citizen_and_asks_the_case_to_follow(
        hub: HubFixture, citizens: dict[str, Citizen]) -> None:
    desk = await hub.desk()
    await _sign_in(desk)
    citizen = citizens["k1"]
    await citizen.request("c1")
    offered = await desk.next("ticket.offered")
    await desk.send("ticket.accept", p.TicketAccept(ticket_id=offered.ticket_id,
                                                    clerk_id="clerk-a"))
    await citizen.reaches(State.IN_CALL)
    await desk.send("ticket.transfer", p.TicketTransfer(
        ticket_id=offered.ticket_id, clerk_id="clerk-a", to_centre="c2"))
    await citizen.reaches(State.WAITING)
    await asyncio.sleep(0.3)
    assert citizen.session.context.centre == "c2"
    assert Action.FOLLOW_TRANSFER in citizen.actions
    assert citizen.session.screen()["note"] == "已为您转到挑选中心，请稍候"


async def test_cancelled_ticket_and_closed_centre(
        hub: HubFixture, citizens: dict[str, Citizen]) -> None:
    desk = await hub.desk(centres=("c1", "c2", "c3"))
    await _sign_in(desk)
    citizen = citizens["k2"]
    await citizen.request("c1")
    await asyncio.sleep(0.3)
    ticket = citizen.session.context.ticket
    assert ticket is not None
    await citizen.client.send("ticket.cancel", p.TicketCancel(ticket_id=ticket.ticket_id))
    await citizen.reaches(State.RESULT)
    assert citizen.session.screen()["receipt"]["kind"] == "cancelled"
    closed = citizens["k4"]
    await closed.request("c3")  # open only on Mondays 09:00-10:00
    await closed.reaches(State.CLOSED)
    screen = closed.session.screen()
    assert screen["reason"] == "outside_hours" and "星期一" in screen["next_opening_words"]
    assert screen["detail"].startswith("关门中心现在不在办公时间。下次可以办理的时间：")

