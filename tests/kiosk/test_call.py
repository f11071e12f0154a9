"""The kiosk service end to end with a headless clerk (the desk page's protocol, in aiortc) on
loopback: a whole case, the clerk's command allow-list and a re-scan supplement, and the
faults: the desk unreachable at upload (and an answer lost), the clerk's browser closed mid
call, and the hub restarted mid call (state in the local Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from remote_desk.headless import HeadlessClerk
from remote_desk.models import AuditEntry, Case
from tongban.demo import DEMO_CLERK, KioskBot, Stack, run_stack

REDIS_URL = os.environ.get("TONGBAN_TEST_KIOSK_REDIS", "redis://127.0.0.1:6379/11")


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both peers offer only 127.0.0.1: call media never leaves loopback."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses",
                        lambda use_ipv4, use_ipv6: ["127.0.0.1"])


async def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.asynccontextmanager
async def clerk_of(stack: Stack, name: str = DEMO_CLERK) -> AsyncIterator[HeadlessClerk]:
    clerk = HeadlessClerk(stack.desk_url, name, stack.password)
    await clerk.start()
    try:
        yield clerk
    finally:
        await clerk.close()


async def in_call(stack: Stack, clerk: HeadlessClerk) -> str:
    """Apply (skipping what may be skipped) and wait until media flows both ways."""
    await KioskBot(stack).apply("yongjia", "gjj-jczm", skip_non_key=True)
    await until(lambda: clerk.video_frames > 10 and clerk.audio_level > 0
                and stack.kiosk.peer is not None
                and stack.kiosk.peer.incoming.video_frames > 10
                and stack.kiosk.peer.incoming.audio_level > 0, 30, "media both ways")
    return str(stack.kiosk.report.case_ids[-1])


async def intakes(stack: Stack, case_id: str) -> int:
    async with stack.desk.db() as db:
        return int((await db.execute(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "intake", AuditEntry.target == case_id))).scalar_one())


async def test_a_whole_case_with_commands_and_a_rescan(tmp_path: Any) -> None:
    async with run_stack(test_hosts=False, folder=tmp_path) as stack, \
            clerk_of(stack) as clerk:
        case_id = await in_call(stack, clerk)
        assert clerk.audio_level > 0 and stack.kiosk.peer is not None
        assert stack.kiosk.peer.incoming.audio_level > 0
        # the package arrives, signed, with the identity record the page renders
        case = await until(lambda: clerk.case(case_id), 20, "the case at the desk")
        names = {f["name"] for f in case["files"]}
        assert {"identity.json", "card_photo.jpg", "live_still.jpg", "id_card-1.jpg"} <= names
        assert case["signature"]["verified"]
        # a command outside the allow-list is refused and logged, nothing else happens
        assert clerk.call is not None
        await clerk.send("call.command", {"call_id": clerk.call["call_id"],
                                          "name": "format_disk", "args": {}})
        await until(lambda: "format_disk" in stack.kiosk.report.refused_commands, 5,
                    "the refusal")
        # a re-scan of the ID card: captured again and added to the same case
        await clerk.send("call.command", {"call_id": clerk.call["call_id"], "name": "rescan",
                                          "args": {"material": "id_card"}})

        async def rescanned() -> bool:
            c = await clerk.case(case_id)
            return bool(c and any(f["name"].startswith("id_card-r") for f in c["files"]))

        await until(rescanned, 40, "the re-scanned page at the desk")
        assert await intakes(stack, case_id) == 2  # the case, then its supplement
        await clerk.decide(case_id, "accept")
        screen = await KioskBot(stack).wait("result", timeout=15)
        assert screen["receipt"]["case_number"].startswith("yongjia-")
        await KioskBot(stack).press("finish")
        await until(lambda: not stack.kiosk.spool.pending(), 10, "an empty spool")
        assert stack.kiosk.residue() == []
        assert stack.kiosk.session.context.card is None and stack.kiosk._files == []


class FlakyProxy:
    """A TCP proxy in front of the desk: refuses while down; ``lose_answers`` forwards the
    request but drops the desk's reply (the kiosk cannot know the upload arrived)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.up = False
        self.lose_answers = 0
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if not self.up:
            writer.close()
            return
        lose = self.lose_answers > 0
        self.lose_answers -= lose
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        async def swallow() -> None:  # the desk answers; the kiosk never hears it
            with contextlib.suppress(Exception):
                await up_reader.read(1)
            writer.close()
            up_writer.close()

        await asyncio.gather(pipe(reader, up_writer),
                             swallow() if lose else pipe(up_reader, writer))
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_desk_unreachable_at_upload_is_spooled_retried_and_delivered_once(
        tmp_path: Any) -> None:
    async with run_stack(test_hosts=False, folder=tmp_path) as stack:
        host, port = stack.desk_url.removeprefix("http://").split(":")
        proxy = FlakyProxy(host, int(port))
        stack.kiosk.config.kiosk.desk_url = await proxy.start()
        async with clerk_of(stack) as clerk:
            case_id = await in_call(stack, clerk)
            # the upload started with the call and is being refused: it waits in the spool
            await until(lambda: proxy.connections >= 2, 20, "retries against the down desk")
            assert stack.kiosk.spool.pending() == [case_id]
            assert (tmp_path / "kiosk-spool" / f"{case_id}.pkg").read_bytes()[:2] != b"{\""
            assert await clerk.case(case_id) is None
            # the desk comes back, but its first answer is lost on the way
            proxy.lose_answers, proxy.up = 1, True
            await until(lambda: stack.kiosk.delivered, 60, "delivery")
            assert stack.kiosk.delivered == [f"{case_id}:already"]  # the retry heard "already"
            assert stack.kiosk.spool.pending() == []
            assert await intakes(stack, case_id) == 1  # stored once; the retry heard "already"
            async with stack.desk.db() as db:
                assert (await db.execute(select(func.count()).select_from(Case))
                        ).scalar_one() == 1
            assert await clerk.case(case_id) is not None
        await proxy.close()


async def test_clerk_browser_closed_mid_call_puts_the_citizen_first_in_line(
        tmp_path: Any) -> None:
    async with run_stack(test_hosts=False, folder=tmp_path, browser_grace_s=2.0,
                         clerks=2) as stack, clerk_of(stack) as first:
        case_id = await in_call(stack, first)
        old_call = stack.kiosk.peer.call_id if stack.kiosk.peer else None
        await first.close_browser()
        bot = KioskBot(stack)
        screen = await bot.wait("waiting", timeout=20)  # after the grace period
        assert screen["position"] == 1
        assert stack.kiosk.peer is None
        async with clerk_of(stack, f"{DEMO_CLERK}-2") as second:
            await until(lambda: second.video_frames > 5, 30, "the next clerk's call")
            assert second.call is not None
            assert second.call["case_id"] == case_id and second.call["call_id"] != old_call
            await second.decide(case_id, "accept")
            await bot.wait("result", timeout=15)


def _redis_or_skip() -> None:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        client.flushdb()
        client.close()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {REDIS_URL} (the machine's Redis starts before sessions)")


async def test_hub_restart_mid_call_both_sides_resume(tmp_path: Any) -> None:
    _redis_or_skip()
    async with run_stack(test_hosts=False, folder=tmp_path, redis=REDIS_URL) as stack, \
            clerk_of(stack) as clerk:
        case_id = await in_call(stack, clerk)
        kiosk_hub, desk_hub = stack.kiosk.hub, stack.desk.hub.client
        assert kiosk_hub is not None
        await stack.restart_hub(down_s=1.0)
        await until(lambda: kiosk_hub.connected and desk_hub.connected, 30,
                    "both sides reconnected")
        assert kiosk_hub.last["hub.welcome"].resumed is True
        assert desk_hub.last["hub.welcome"].resumed is True
        # the call's media never went through the hub: it kept flowing; the session is intact
        before = clerk.video_frames
        await until(lambda: clerk.video_frames > before + 10, 10, "media after the restart")
        assert stack.kiosk.session.state.value == "in_call"
        await clerk.decide(case_id, "accept")  # the receipt travels over the new hub
        screen = await KioskBot(stack).wait("result", timeout=15)
        assert screen["receipt"]["kind"] == "accept"


async def test_reader_unplugged_mid_session_shows_the_fault_and_a_way_back(
        tmp_path: Any) -> None:
    async with run_stack(test_hosts=False, folder=tmp_path) as stack:
        bot = KioskBot(stack)
        await bot.press("touch")
        await bot.press("choose_centre", centre="yongjia")
        await bot.press("choose_matter", matter="gjj-jczm")
        await bot.wait("read_card", timeout=5)
        stack.sim.unplug()
        screen = await bot.wait("device_fault", timeout=15)
        assert "设备故障" in screen["prompt"]
        screen = await bot.press("back")  # a way back: the session is wiped
        assert screen["state"] == "idle"
        stack.sim.replug()


async def test_hub_restarted_without_shared_state_the_kiosk_asks_again(
        tmp_path: Any) -> None:
    async with run_stack(test_hosts=False, folder=tmp_path) as stack, \
            clerk_of(stack) as clerk:
        clerk.auto_accept = False  # signed in, busy: the citizen waits in the queue
        bot = KioskBot(stack)
        await bot.apply("yongjia", "gjj-jczm", skip_non_key=True)
        screen = await bot.wait("waiting", timeout=10)
        case_id = stack.kiosk.report.case_ids[-1]
        assert screen["position"] == 1
        hub = stack.kiosk.hub
        assert hub is not None
        before = hub.last["ticket.update"]
        await stack.restart_hub(down_s=2.0)  # the memory hub forgot every ticket and clerk
        await until(lambda: hub.last["ticket.update"] is not before and hub.connected, 40,
                    "the ticket asked for again")
        assert hub.last["ticket.update"].case_id == case_id
        assert hub.last["hub.welcome"].resumed is False
        await bot.wait("waiting", timeout=5)
        assert stack.kiosk.report.case_ids == [case_id]  # the same case, nothing lost
        # the desk told the new hub who is signed in and watches its queues again
        await until(lambda: any(i.get("offered_to") == DEMO_CLERK
                                for i in clerk.queue.values()
                                if i["ticket_id"] == hub.last["ticket.update"].ticket_id),
                    20, "the ticket offered to the clerk by the new hub")
        await clerk.accept(hub.last["ticket.update"].ticket_id)
        await until(lambda: clerk.video_frames > 5, 30, "the call")
        assert clerk.call is not None and clerk.call["case_id"] == case_id
