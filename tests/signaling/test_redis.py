"""Two hub processes sharing state through the Redis running on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from signaling import protocol as p
from signaling.auth import CredentialStore
from signaling.client import HubClient
from signaling.protocol import ClientKind

REDIS_URL = os.environ.get("TONGBAN_TEST_REDIS", "redis://127.0.0.1:6379/9")

DIRECTORY = """
[[matters]]
code = "m1"
name = "异地长期居住人员备案"

[[sites]]
code = "s1"

[[centres]]
code = "c1"
name = "test"
province = "浙江"
site = "s1"
routing = "auto"
chinese_calendar = false
matters = ["m1"]
[centres.hours]
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
wed = ["00:00-24:00"]
thu = ["00:00-24:00"]
fri = ["00:00-24:00"]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]
"""


def _redis_or_skip() -> None:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        client.ping()
    except Exception as exc:  # no server: this machine cannot run the distributed mode
        pytest.skip(f"no Redis at {REDIS_URL} ({type(exc).__name__})")


def _drop_prefix(prefix: str) -> None:
    """Delete one test's keys (never the database: other work shares it)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(tmp: Path, port: int, channel: str, prefix: str, *, grace_s: float = 3.0,
           extra: str = "", log: Path | None = None) -> subprocess.Popen[bytes]:
    """A ``tongban signaling serve`` process on the local Redis under its own channel and key
    prefix (``extra``: more ``[hub]`` lines; ``log``: where its stderr goes)."""
    config = tmp / f"hub-{port}.toml"
    config.write_text(f'[hub]\ngrace_seconds = {grace_s}\nredis_channel = "{channel}"\n'
                      f'redis_prefix = "{prefix}"\n{extra}')
    proc = subprocess.Popen(
        [sys.executable, "-m", "tongban", "signaling", "serve", "--config", str(config),
         "--redis", REDIS_URL, "--port", str(port), "--credentials", str(tmp / "creds.json"),
         "--directory", str(tmp / "directory.toml")],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb") if log else subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("hub process did not start")


@pytest.fixture
def two_hubs(tmp_path: Path) -> Iterator[tuple[str, str, list[subprocess.Popen[bytes]], Path]]:
    _redis_or_skip()
    (tmp_path / "directory.toml").write_text(DIRECTORY)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    channel, prefix = f"tongban-test-{tag}", f"tbtest-{tag}:"
    ports = [_free_port(), _free_port()]
    procs = [_start(tmp_path, port, channel, prefix) for port in ports]
    yield (f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}", procs, tmp_path)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
    _drop_prefix(prefix)


@pytest.fixture
async def clients() -> AsyncIterator[list[HubClient]]:
    made: list[HubClient] = []
    yield made
    for c in made:
        with contextlib.suppress(Exception):
            await c.close()


def _client(tmp: Path, url: str, client_id: str, kind: ClientKind, made: list[HubClient],
            **kw: object) -> HubClient:
    store = CredentialStore(tmp / "creds.json")
    key = store.create(client_id, kind, **kw)  # type: ignore[arg-type]
    client = HubClient(url, client_id, kind, key, reconnection=False)
    made.append(client)
    return client


async def test_kiosk_on_one_process_and_desk_on_the_other_set_up_a_call(
        two_hubs: tuple[str, str, list[subprocess.Popen[bytes]], Path],
        clients: list[HubClient]) -> None:
    url_a, url_b, _, tmp = two_hubs
    desk = _client(tmp, url_b, "d1", ClientKind.DESK, clients, centres=["c1"])
    kiosk = _client(tmp, url_a, "k1", ClientKind.KIOSK, clients, site="s1")
    await desk.connect()
    await kiosk.connect()
    await desk.send("clerk.presence", p.ClerkPresence(clerk_id="clerk-a", centre="c1",
                                                      matters=["m1"], available=True))
    await asyncio.sleep(0.2)
    await kiosk.send("ticket.request", p.TicketRequest(centre="c1", matter="m1",
                                                       case_id="case-0001"))
    ticket = await kiosk.next("ticket.update")
    offered = await desk.next("ticket.offered")
    assert offered.ticket_id == ticket.ticket_id
    await desk.send("ticket.accept", p.TicketAccept(ticket_id=ticket.ticket_id,
                                                    clerk_id="clerk-a"))
    start = await kiosk.next("call.start")
    await desk.next("call.start")
    await kiosk.send("call.offer", p.CallOffer(call_id=start.call_id, sdp="v=0 offer"))
    assert (await desk.next("call.offer")).sdp == "v=0 offer"
    await desk.send("call.answer", p.CallAnswer(call_id=start.call_id, sdp="v=0 answer"))
    assert (await kiosk.next("call.answer")).sdp == "v=0 answer"


async def test_a_ticket_survives_its_process_being_killed(
        two_hubs: tuple[str, str, list[subprocess.Popen[bytes]], Path],
        clients: list[HubClient]) -> None:
    url_a, url_b, procs, tmp = two_hubs
    desk = _client(tmp, url_b, "d1", ClientKind.DESK, clients, centres=["c1"])
    kiosk = _client(tmp, url_a, "k1", ClientKind.KIOSK, clients, site="s1")
    await desk.connect()
    await desk.send("clerk.presence", p.ClerkPresence(clerk_id="clerk-a", centre="c1",
                                                      matters=["m1"], available=False))
    await kiosk.connect()
    await kiosk.send("ticket.request", p.TicketRequest(centre="c1", matter="m1",
                                                       case_id="case-0001"))
    ticket = await kiosk.next("ticket.update")
    procs[0].kill()  # process A dies mid-queue, without a goodbye
    procs[0].wait(5)
    await asyncio.sleep(0.5)
    kiosk.url = url_b  # the load balancer sends the kiosk to the surviving process
    kiosk.sio = type(kiosk.sio)(reconnection=False)
    kiosk.sio.on("*", kiosk._receive)
    welcome = await kiosk.connect()
    assert welcome.resumed is True
    assert [t.ticket_id for t in welcome.tickets] == [ticket.ticket_id]
    await desk.send("clerk.presence", p.ClerkPresence(clerk_id="clerk-a", centre="c1",
                                                      matters=["m1"], available=True))
    offered = await desk.next("ticket.offered")
    assert offered.ticket_id == ticket.ticket_id
