"""Queues, positions, both routing modes, accept / decline / transfer / cancel, closures."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from typing import Any

from signaling import protocol as p
from signaling.client import HubClient

from .conftest import TURN_SECRET, HubFixture


async def _sign_in(desk: HubClient, clerk: str, centre: str = "c1",
                   matters: tuple[str, ...] = ("m1", "m2"), available: bool = True) -> None:
    await desk.send("clerk.presence", p.ClerkPresence(clerk_id=clerk, centre=centre,
                                                      matters=list(matters),
                                                      available=available))
    await asyncio.sleep(0.05)


async def _request(kiosk: HubClient, centre: str = "c1", matter: str = "m1",
                   case: str = "case-0001") -> p.TicketUpdate:
    await kiosk.send("ticket.request", p.TicketRequest(centre=centre, matter=matter,
                                                       case_id=case))
    return await kiosk.next("ticket.update")


async def _latest(client: HubClient, event: str, settle: float = 0.15) -> Any:
    await asyncio.sleep(settle)
    client.drain(event)
    assert event in client.last, f"no {event}"
    return client.last[event]


async def test_queue_order_positions_and_expected_wait(hub: HubFixture) -> None:
    desk = await hub.desk()
    await _sign_in(desk, "clerk-a", centre="c2", available=False)
    kiosks = [await hub.kiosk(f"k{i}") for i in range(3)]
    for i, k in enumerate(kiosks):
        first = await _request(k, centre="c2", case=f"case-000{i}")
        assert first.state == "waiting" and first.position == i + 1
    updates = [await _latest(k, "ticket.update") for k in kiosks]
    assert [u.position for u in updates] == [1, 2, 3]
    assert updates[0].expected_wait_s < updates[1].expected_wait_s < \
        updates[2].expected_wait_s
    await kiosks[0].send("ticket.cancel", p.TicketCancel(ticket_id=updates[0].ticket_id))
    closed = await _latest(kiosks[0], "ticket.update")
    assert closed.state == "closed" and closed.reason == "cancelled"
    moved = [await _latest(k, "ticket.update") for k in kiosks[1:]]
    assert [u.position for u in moved] == [1, 2]


async def test_nobody_signed_in_and_outside_hours_are_told_at_once(hub: HubFixture) -> None:
    kiosk = await hub.kiosk()
    await kiosk.send("ticket.request", p.TicketRequest(centre="c1", matter="m1",
                                                       case_id="case-0001"))
    closed = await kiosk.next("service.closed")
    assert closed.reason == "no_clerk"
    await kiosk.send("ticket.request", p.TicketRequest(centre="c3", matter="m1",
                                                       case_id="case-0002"))
    closed = await kiosk.next("service.closed")
    assert closed.reason == "outside_hours" and closed.next_opening
    await kiosk.send("ticket.request", p.TicketRequest(centre="c1", matter="nope",
                                                       case_id="case-0003"))
    assert (await kiosk.next("service.closed")).reason == "unknown_matter"


async def test_automatic_routing_offers_to_the_clerk_idle_longest(
        hub: HubFixture, turn_secret: str) -> None:
    desk = await hub.desk()
    await _sign_in(desk, "clerk-a")
    await asyncio.sleep(0.05)
    await _sign_in(desk, "clerk-b")
    k1, k2 = await hub.kiosk("k1"), await hub.kiosk("k2")
    t1 = await _request(k1, case="case-0001")
    offer = await desk.next("ticket.offered")
    assert offer.clerk_id == "clerk-a" and offer.ticket_id == t1.ticket_id
    await _request(k2, case="case-0002")
    offer2 = await desk.next("ticket.offered")
    assert offer2.clerk_id == "clerk-b"
    await desk.send("ticket.accept", p.TicketAccept(ticket_id=t1.ticket_id,
                                                    clerk_id="clerk-a"))
    kiosk_start = await k1.next("call.start")
    desk_start = await desk.next("call.start")
    assert kiosk_start.role == "offerer" and desk_start.role == "answerer"
    assert kiosk_start.call_id == desk_start.call_id
    servers = kiosk_start.ice_servers
    assert servers[0].urls == ["stun:127.0.0.1:3478"]
    turn = servers[1]
    expiry, who = turn.username.split(":")
    assert who == "k1" and int(expiry) > 0
    expected = base64.b64encode(hmac.new(turn_secret.encode(), turn.username.encode(),
                                         hashlib.sha1).digest()).decode()
    assert turn.credential == expected == base64.b64encode(hmac.new(
        TURN_SECRET.encode(), turn.username.encode(), hashlib.sha1).digest()).decode()
    assert desk_start.ice_servers[1].username.endswith(":d1")


async def test_pick_mode_shows_the_list_and_a_clerk_takes_any(hub: HubFixture) -> None:
    desk = await hub.desk()
    await desk.send("queue.watch", p.QueueWatch(centre="c2"))
    await _sign_in(desk, "clerk-a", centre="c2")
    k1, k2 = await hub.kiosk("k1"), await hub.kiosk("k2")
    await _request(k1, centre="c2", case="case-0001")
    t2 = await _request(k2, centre="c2", matter="m2", case="case-0002")
    snapshot = await _latest(desk, "queue.snapshot")
    assert snapshot.routing == "pick"
    assert [i.matter for i in snapshot.items] == ["m1", "m2"]
    assert not desk.drain("ticket.offered")  # nothing is offered in pick mode
    await desk.send("ticket.accept", p.TicketAccept(ticket_id=t2.ticket_id,
                                                    clerk_id="clerk-a"))
    assert (await k2.next("call.start")).ticket_id == t2.ticket_id
    snapshot = await _latest(desk, "queue.snapshot")
    assert [i.matter for i in snapshot.items] == ["m1"]


async def test_decline_puts_the_ticket_back_at_the_front(hub: HubFixture) -> None:
    desk = await hub.desk()
    await _sign_in(desk, "clerk-a")
    k1, k2 = await hub.kiosk("k1"), await hub.kiosk("k2")
    t1 = await _request(k1, case="case-0001")
    await desk.next("ticket.offered")
    await _request(k2, case="case-0002")
    await desk.send("ticket.decline", p.TicketDecline(ticket_id=t1.ticket_id,
                                                      clerk_id="clerk-a"))
    again = await desk.next("ticket.offered")
    assert again.ticket_id == t1.ticket_id  # still the longest waiting: first again
    assert (await _latest(k2, "ticket.update")).position == 2


async def test_transfer_to_a_clerk_and_to_another_centre(hub: HubFixture) -> None:
    desk = await hub.desk()
    await _sign_in(desk, "clerk-a")
    k1 = await hub.kiosk("k1")
    t1 = await _request(k1, case="case-0001")
    await desk.next("ticket.offered")
    await desk.send("ticket.accept", p.TicketAccept(ticket_id=t1.ticket_id,
                                                    clerk_id="clerk-a"))
    call = await k1.next("call.start")
    await _sign_in(desk, "clerk-b", available=False)
    await desk.send("ticket.transfer", p.TicketTransfer(
        ticket_id=t1.ticket_id, clerk_id="clerk-a", to_clerk="clerk-b"))
    assert (await k1.next("call.ended")).call_id == call.call_id
    offered = await desk.next("ticket.offered")
    assert offered.clerk_id == "clerk-b"
    # nobody at c2 handles it yet: refused, the citizen stays offered to clerk-b
    await desk.send("ticket.transfer", p.TicketTransfer(
        ticket_id=t1.ticket_id, clerk_id="clerk-b", to_centre="c2"))
    refused = await desk.next("hub.error")
    assert refused.code == "closed" and "nobody" in refused.message
    await _sign_in(desk, "clerk-c", centre="c2", available=False)
    await desk.send("ticket.transfer", p.TicketTransfer(
        ticket_id=t1.ticket_id, clerk_id="clerk-b", to_centre="c2"))
    moved = await _latest(k1, "ticket.update")
    assert moved.centre == "c2" and moved.state == "waiting"


async def test_cancel_during_a_call_tells_the_clerk(hub: HubFixture) -> None:
    desk = await hub.desk()
    await _sign_in(desk, "clerk-a")
    k1 = await hub.kiosk("k1")
    t1 = await _request(k1, case="case-0001")
    await desk.next("ticket.offered")
    await desk.send("ticket.accept", p.TicketAccept(ticket_id=t1.ticket_id,
                                                    clerk_id="clerk-a"))
    call = await desk.next("call.start")
    await k1.send("ticket.cancel", p.TicketCancel(ticket_id=t1.ticket_id))
    ended = await desk.next("call.ended")
    assert p.dump(ended) == {"v": 1, "call_id": call.call_id, "reason": "cancelled"}


async def test_a_desk_cannot_serve_another_centre(hub: HubFixture) -> None:
    other = await hub.desk("d2", centres=("c2",))
    await other.send("clerk.presence", p.ClerkPresence(clerk_id="xx", centre="c1",
                                                       matters=["m1"], available=True))
    assert (await other.next("hub.error")).code == "forbidden"
    await other.send("queue.watch", p.QueueWatch(centre="c1"))
    assert (await other.next("hub.error")).code == "forbidden"
    desk = await hub.desk()
    await _sign_in(desk, "clerk-a")
    k1 = await hub.kiosk("k1")
    t1 = await _request(k1, case="case-0001")
    await _sign_in(other, "clerk-z", centre="c2")
    await other.send("ticket.accept", p.TicketAccept(ticket_id=t1.ticket_id,
                                                     clerk_id="clerk-z"))
    assert (await other.next("hub.error")).code == "forbidden"
