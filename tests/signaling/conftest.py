"""A hub on loopback with a test directory, credentials, and authenticated clients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from signaling.auth import CredentialStore
from signaling.client import HubClient
from signaling.directory import Centre, Directory, Matter, Site
from signaling.hub import Hub, HubConfig
from signaling.protocol import ClientKind

ALWAYS = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
TURN_SECRET = "test-turn-secret"


def test_directory() -> Directory:
    return Directory(
        matters=[Matter(code="m1", name="异地长期居住人员备案", avg_service_minutes=8),
                 Matter(code="m2", name="公积金提取", avg_service_minutes=10)],
        sites=[Site(code="s1", stun=["stun:127.0.0.1:3478"], turn=["turn:127.0.0.1:3478"],
                    turn_secret_env="TB_TEST_TURN_SECRET", turn_ttl=600)],
        centres=[
            Centre(code="c1", name="自动", province="浙江", site="s1", routing="auto",
                   hours=ALWAYS, chinese_calendar=False, matters=["m1", "m2"]),
            Centre(code="c2", name="挑选", province="江苏", site="s1", routing="pick",
                   hours=ALWAYS, chinese_calendar=False, matters=["m1", "m2"]),
            Centre(code="c3", name="关门", province="浙江", site="s1", routing="auto",
                   hours={"mon": ["09:00-10:00"]}, chinese_calendar=False, matters=["m1"]),
        ])


@dataclass
class HubFixture:
    hub: Hub
    url: str
    creds: CredentialStore
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    clients: list[HubClient] = field(default_factory=list)

    def register(self, client_id: str, kind: ClientKind, **kw: Any) -> Ed25519PrivateKey:
        key = self.creds.create(client_id, kind, **kw)
        self.keys[client_id] = key
        return key

    async def client(self, client_id: str, kind: ClientKind, *, connect: bool = True,
                     **kw: Any) -> HubClient:
        key = self.keys.get(client_id)
        if key is None:
            key = self.register(client_id, kind, **kw)
        c = HubClient(self.url, client_id, kind, key, reconnection=False)
        self.clients.append(c)
        if connect:
            await c.connect()
        return c

    async def kiosk(self, client_id: str = "k1", site: str = "s1") -> HubClient:
        return await self.client(client_id, ClientKind.KIOSK, site=site)

    async def desk(self, client_id: str = "d1", centres: tuple[str, ...] = ("c1", "c2")
                   ) -> HubClient:
        return await self.client(client_id, ClientKind.DESK, centres=list(centres))


async def start_hub(tmp_path: Path, **config: Any) -> tuple[Hub, web.AppRunner, str]:
    settings = {"credentials": tmp_path / "creds.json", "grace_seconds": 1.0,
                "offer_seconds": 5.0, **config}
    hub = Hub(HubConfig(**settings), directory=test_directory())
    runner = web.AppRunner(hub.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return hub, runner, f"http://127.0.0.1:{port}"


@pytest.fixture
def turn_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TB_TEST_TURN_SECRET", TURN_SECRET)
    yield TURN_SECRET


@pytest.fixture
async def hub(tmp_path: Path, turn_secret: str) -> AsyncIterator[HubFixture]:
    del turn_secret
    hub, runner, url = await start_hub(tmp_path)
    fixture = HubFixture(hub, url, hub.credentials)
    yield fixture
    for c in fixture.clients:
        with contextlib.suppress(Exception):
            await c.close()
    await runner.cleanup()


Factory = Callable[..., Any]
