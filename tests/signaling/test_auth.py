"""Every refusal at connect: no token, malformed, expired, replayed, unknown, revoked, forged."""

from __future__ import annotations

import time

import pytest
import socketio

from signaling.auth import make_token
from signaling.protocol import ClientKind

from .conftest import HubFixture


async def _refused(hub: HubFixture, auth: object) -> dict[str, str]:
    client = socketio.AsyncClient(reconnection=False)
    reasons: list[object] = []
    client.on("connect_error", reasons.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(hub.url, auth=auth, transports=["websocket"], wait_timeout=3)
    await client.disconnect()
    assert reasons and isinstance(reasons[0], dict), reasons
    reason = reasons[0]
    return reason.get("data", reason)  # type: ignore[no-any-return]


async def test_no_token_is_refused(hub: HubFixture) -> None:
    assert (await _refused(hub, {}))["code"] == "no_token"
    assert (await _refused(hub, None))["code"] == "no_token"
    assert (await _refused(hub, {"token": "x.y"}))["code"] == "bad_token"


async def test_expired_token_is_refused(hub: HubFixture) -> None:
    key = hub.register("k-old", ClientKind.KIOSK, site="s1")
    token = make_token(key, "k-old", ClientKind.KIOSK, ttl=60, now=time.time() - 120)
    assert (await _refused(hub, {"token": token}))["code"] == "expired"


async def test_replayed_token_is_refused(hub: HubFixture) -> None:
    key = hub.register("k-replay", ClientKind.KIOSK, site="s1")
    token = make_token(key, "k-replay", ClientKind.KIOSK)
    first = socketio.AsyncClient(reconnection=False)
    await first.connect(hub.url, auth={"token": token}, transports=["websocket"])
    await first.disconnect()
    assert (await _refused(hub, {"token": token}))["code"] == "replayed"


async def test_long_lived_token_is_refused(hub: HubFixture) -> None:
    key = hub.register("k-long", ClientKind.KIOSK, site="s1")
    token = make_token(key, "k-long", ClientKind.KIOSK, ttl=3600)
    assert (await _refused(hub, {"token": token}))["code"] == "bad_token"


async def test_unknown_revoked_forged_and_wrong_kind(hub: HubFixture) -> None:
    key = hub.register("k-a", ClientKind.KIOSK, site="s1")
    other = hub.register("k-b", ClientKind.KIOSK, site="s1")
    assert (await _refused(hub, {"token": make_token(key, "nobody", ClientKind.KIOSK)}))[
        "code"] == "unknown_client"
    forged = make_token(other, "k-a", ClientKind.KIOSK)  # signed with someone else's key
    assert (await _refused(hub, {"token": forged}))["code"] == "bad_signature"
    assert (await _refused(hub, {"token": make_token(key, "k-a", ClientKind.DESK)}))[
        "code"] == "bad_token"
    hub.creds.revoke("k-a")
    assert (await _refused(hub, {"token": make_token(key, "k-a", ClientKind.KIOSK)}))[
        "code"] == "revoked"


async def test_refusals_are_counted(hub: HubFixture) -> None:
    await _refused(hub, {})
    value = hub.hub.metrics.refusals.labels("no_token")._value.get()
    assert value >= 1
