"""Call set-up relay, isolation, event validation, reconnect and resume, vanishing parties."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from signaling import protocol as p
from signaling.client import HubClient
from signaling.hub import HubConfig

from .conftest import HubFixture


async def _in_call(hub: HubFixture, kiosk_id: str = "k1") -> tuple[HubClient, HubClient,
                                                                    dict[str, Any]]:
    desk = await hub.desk()
    await desk.send("clerk.presence", p.ClerkPresence(clerk_id="clerk-a", centre="c1",
                                                      matters=["m1"], available=True))
    kiosk = await hub.kiosk(kiosk_id)
    await kiosk.send("ticket.request", p.TicketRequest(centre="c1", matter="m1",
                                                       case_id="case-0001"))
    offered = await desk.next("ticket.offered")
    await desk.send("ticket.accept", p.TicketAccept(ticket_id=offered.ticket_id,
                                                    clerk_id="clerk-a"))
    start = await kiosk.next("call.start")
    await desk.next("call.start")
    return kiosk, desk, start


async def test_offer_answer_and_ice_are_relayed_between_the_parties(hub: HubFixture) -> None:
    kiosk, desk, start = await _in_call(hub)
    call_id = start.call_id
    await kiosk.send("call.offer", p.CallOffer(call_id=call_id, sdp="v=0 offer"))
    assert (await desk.next("call.offer")).sdp == "v=0 offer"
    await desk.send("call.answer", p.CallAnswer(call_id=call_id, sdp="v=0 answer"))
    assert (await kiosk.next("call.answer")).sdp == "v=0 answer"
    await kiosk.send("call.ice", p.CallIce(call_id=call_id, candidate="candidate:1 1 udp",
                                           sdp_mid="0", sdp_mline_index=0))
    assert (await desk.next("call.ice")).candidate == "candidate:1 1 udp"
    await desk.send("call.ice", p.CallIce(call_id=call_id, candidate=None))
    assert (await kiosk.next("call.ice")).candidate is None
    await desk.send("call.command", p.CallCommand(call_id=call_id, name="rescan",
                                                  args={"material": "proxy_letter"}))
    assert (await kiosk.next("call.command")).args == {"material": "proxy_letter"}


async def test_a_third_party_cannot_inject_into_a_call(hub: HubFixture) -> None:
    kiosk, desk, start = await _in_call(hub)
    intruder = await hub.kiosk("k-intruder")
    other_desk = await hub.desk("d2", centres=("c1",))
    await intruder.send("call.offer", p.CallOffer(call_id=start.call_id, sdp="evil"))
    assert (await intruder.next("hub.error")).code == "forbidden"
    await other_desk.send("call.answer", p.CallAnswer(call_id=start.call_id, sdp="evil"))
    assert (await other_desk.next("hub.error")).code == "forbidden"
    await intruder.send("call.end", p.CallEnd(call_id=start.call_id))
    assert (await intruder.next("hub.error")).code == "forbidden"
    await asyncio.sleep(0.2)
    assert not desk.drain("call.offer") and not kiosk.drain("call.answer")
    assert not kiosk.drain("call.ended") and not desk.drain("call.ended")
    # a kiosk may not send desk events at all
    await intruder.send("ticket.accept", p.TicketAccept(ticket_id="abcdefgh", clerk_id="xx"))
    assert (await intruder.next("hub.error")).code == "forbidden"


async def test_invalid_unknown_and_oversized_events_are_refused(hub: HubFixture) -> None:
    kiosk = await hub.kiosk()
    await kiosk.send_raw("ticket.request", {"v": 1, "centre": "c1"})
    error = await kiosk.next("hub.error")
    assert error.code == "invalid" and "matter" in error.message
    await kiosk.send_raw("ticket.request", {"v": 1, "centre": "c1", "matter": "m1",
                                            "case_id": "case-0001", "admin": True})
    assert (await kiosk.next("hub.error")).code == "invalid"
    await kiosk.send_raw("ticket.request", {"v": 2, "centre": "c1", "matter": "m1",
                                            "case_id": "case-0001"})
    assert (await kiosk.next("hub.error")).code == "invalid"
    await kiosk.send_raw("steal.everything", {"v": 1})
    assert (await kiosk.next("hub.error")).code == "unknown_event"
    await kiosk.send_raw("call.offer", {"v": 1, "call_id": "abcdefgh", "sdp": "x" * 50_000,
                                        "pad": "y" * 20_000})
    # over the limit: refused as an event, or the transport drops the message
    try:
        assert (await kiosk.next("hub.error", timeout=2)).code in ("too_large", "invalid")
    except TimeoutError:
        assert not kiosk.sio.connected


async def test_reconnect_resumes_the_ticket_within_the_grace_period(hub: HubFixture) -> None:
    desk = await hub.desk()
    await desk.send("clerk.presence", p.ClerkPresence(clerk_id="clerk-a", centre="c2",
                                                      matters=["m1"], available=True))
    kiosk = await hub.kiosk()
    await kiosk.send("ticket.request", p.TicketRequest(centre="c2", matter="m1",
                                                       case_id="case-0001"))
    ticket = await kiosk.next("ticket.update")
    token = kiosk.resume_token
    await kiosk.close()
    await asyncio.sleep(0.2)
    welcome = await kiosk.connect()  # a new socket id, the same kiosk, the resume token
    assert welcome.resumed is True and token != welcome.resume_token
    assert [t.ticket_id for t in welcome.tickets] == [ticket.ticket_id]
    await asyncio.sleep(1.3)  # past the grace period: the resumed ticket survives it
    await desk.send("ticket.accept", p.TicketAccept(ticket_id=ticket.ticket_id,
                                                    clerk_id="clerk-a"))
    assert (await kiosk.next("call.start")).ticket_id == ticket.ticket_id


async def test_a_restarted_kiosk_without_resume_token_starts_afresh(hub: HubFixture) -> None:
    desk = await hub.desk()
    await desk.send("clerk.presence", p.ClerkPresence(clerk_id="clerk-a", centre="c2",
                                                      matters=["m1"], available=True))
    kiosk = await hub.kiosk()
    await kiosk.send("ticket.request", p.TicketRequest(centre="c2", matter="m1",
                                                       case_id="case-0001"))
    await kiosk.next("ticket.update")
    await kiosk.close()
    kiosk.resume_token = None
    welcome = await kiosk.connect()
    assert welcome.resumed is False and welcome.tickets == []
    await desk.send("queue.watch", p.QueueWatch(centre="c2"))
    snapshot = await desk.next("queue.snapshot")
    assert snapshot.items == []


async def test_clerk_vanishing_mid_call(hub: HubFixture) -> None:
    kiosk, desk, start = await _in_call(hub)
    waiting = await hub.kiosk("k2")
    await waiting.send("ticket.request", p.TicketRequest(centre="c1", matter="m1",
                                                         case_id="case-0002"))
    await waiting.next("ticket.update")
    await desk.close()
    lost = await kiosk.next("call.peer_lost", timeout=2)  # the kiosk is told at once
    assert lost.call_id == start.call_id and lost.grace_s == 1
    ended = await kiosk.next("call.ended", timeout=4)  # after the grace period
    assert ended.reason == "clerk_gone"
    await asyncio.sleep(0.2)
    assert kiosk.last["ticket.update"].state == "waiting"
    assert kiosk.last["ticket.update"].position == 1  # back at the front
    assert waiting.last["ticket.update"].position == 2


async def test_clerk_back_within_grace_keeps_the_call(hub: HubFixture) -> None:
    kiosk, desk, start = await _in_call(hub)
    await desk.close()
    await kiosk.next("call.peer_lost", timeout=2)
    welcome = await desk.connect()
    assert welcome.resumed and welcome.calls[0].call_id == start.call_id
    assert (await kiosk.next("call.peer_back")).call_id == start.call_id
    await asyncio.sleep(1.3)
    assert not kiosk.drain("call.ended")


async def test_kiosk_vanishing_mid_call(hub: HubFixture) -> None:
    kiosk, desk, start = await _in_call(hub)
    await kiosk.close()
    assert (await desk.next("call.peer_lost", timeout=2)).call_id == start.call_id
    ended = await desk.next("call.ended", timeout=4)
    assert ended.reason == "kiosk_gone"


async def test_call_restart_gives_a_new_call_under_the_same_ticket(hub: HubFixture) -> None:
    kiosk, desk, start = await _in_call(hub)
    await kiosk.send("call.restart", p.CallRestart(call_id=start.call_id))
    again = await kiosk.next("call.start")
    assert again.ticket_id == start.ticket_id and again.call_id != start.call_id
    assert (await desk.next("call.start")).call_id == again.call_id
    await kiosk.send("call.offer", p.CallOffer(call_id=start.call_id, sdp="old"))
    assert (await kiosk.next("hub.error")).code == "forbidden"  # the old call is gone


async def test_completed_call_closes_the_ticket_and_frees_the_clerk(hub: HubFixture) -> None:
    kiosk, desk, start = await _in_call(hub)
    await desk.send("call.end", p.CallEnd(call_id=start.call_id, reason="completed"))
    assert (await kiosk.next("call.ended")).reason == "completed"
    await asyncio.sleep(0.1)
    assert kiosk.last["ticket.update"].state == "closed"
    k2 = await hub.kiosk("k2")
    await k2.send("ticket.request", p.TicketRequest(centre="c1", matter="m1",
                                                    case_id="case-0002"))
    assert (await desk.next("ticket.offered")).clerk_id == "clerk-a"


def test_dead_parties_are_noticed_within_ten_seconds() -> None:
    config = HubConfig()
    assert config.ping_interval + config.ping_timeout <= 10


async def test_health_and_metrics(hub: HubFixture) -> None:
    import aiohttp

    await _in_call(hub)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{hub.url}/healthz") as r:
            assert r.status == 200
            health = await r.json()
        async with session.get(f"{hub.url}/metrics") as r:
            metrics = await r.text()
    assert health["ok"] and health["store"] == "memory" and health["connected"]["kiosk"] == 1
    assert "tongban_hub_call_setups_total 1.0" in metrics
    assert 'tongban_hub_connected{kind="desk"} 1.0' in metrics


@pytest.mark.parametrize("event", sorted(p.INBOUND))
def test_every_inbound_event_has_a_model_and_a_sender(event: str) -> None:
    assert event in p.KIOSK_EVENTS | p.DESK_EVENTS
