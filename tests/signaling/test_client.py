"""The hub client parses what the hub sends at the door: models only, invalid events refused."""

from __future__ import annotations

import io

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from signaling import protocol as p
from signaling.client import HubClient


def _client() -> HubClient:
    return HubClient("http://127.0.0.1:9", "kiosk-1", p.ClientKind.KIOSK,
                     Ed25519PrivateKey.generate(), reconnection=False)


async def test_events_arrive_as_their_protocol_models() -> None:
    client, heard = _client(), []

    async def listener(event: str, message: p.Message) -> None:
        heard.append((event, message))

    client.listener = listener
    await client._receive("ticket.update", {
        "v": 1, "ticket_id": "ticket-0001", "case_id": "case-0001", "centre": "c1",
        "matter": "m1", "state": "waiting", "position": 2, "expected_wait_s": 480})
    update = await client.next("ticket.update", timeout=1)
    assert isinstance(update, p.TicketUpdate) and update.state is p.TicketState.WAITING
    assert heard == [("ticket.update", update)] and client.last["ticket.update"] is update


async def test_an_event_that_does_not_validate_is_refused_and_logged_without_its_payload(
        log_stream: io.StringIO) -> None:
    client, heard = _client(), []

    async def listener(event: str, message: p.Message) -> None:
        heard.append(event)

    client.listener = listener
    # the state the old kiosk looked for, which the protocol does not have
    await client._receive("ticket.update", {
        "v": 1, "ticket_id": "ticket-0001", "case_id": "case-secret-9", "centre": "c1",
        "matter": "m1", "state": "queued"})
    await client._receive("ticket.teleport", {"v": 1})
    await client._receive("call.start", "not an object")
    assert heard == [] and client.last == {} and not client.drain("ticket.update")
    assert client.refused == ["ticket.update", "ticket.teleport", "call.start"]
    written = log_stream.getvalue()
    assert "hub_client.event_refused" in written and "state" in written
    assert "case-secret-9" not in written  # never the payload
