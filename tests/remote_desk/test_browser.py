"""The clerk's browser end to end: Debian's Chromium on a test host (its own network
namespace), driven by Playwright, takes a call from an aiortc peer standing in for the kiosk:
log in, see the queued request, accept, receive real video and audio and send them back, open
a material at full resolution, decide 容缺受理 with a deadline, and find the audit entries.
Screenshots of the main views go to test-artifacts/."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from remote_desk.app import DeskApp
from remote_desk.blobs import new_key, parse_key
from remote_desk.config import DeskConfig
from remote_desk.db import upgrade
from remote_desk.hublink import HubLink
from remote_desk.package import Manifest, describe_file, sign
from remote_desk.users import Role, add_user
from signaling import protocol as p
from signaling.client import HubClient
from signaling.protocol import ClientKind
from tests import netns
from tests.signaling.conftest import start_hub
from tongban.rtc import IncomingMedia, peer_connection, synthetic_video, tone

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "correct horse battery"


def _skip_reason() -> str | None:
    if shutil.which("chromium") is None:
        return "Debian's chromium is not installed (make test installs it as root)"
    try:
        import aiortc  # noqa: F401
        import playwright  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed"
    return netns.available()


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def _page_jpeg() -> bytes:
    page = np.full((1400, 990, 3), 250, np.uint8)
    for i in range(20):
        cv2.putText(page, f"proxy authorisation letter line {i}", (60, 120 + i * 55),
                    cv2.FONT_HERSHEY_SIMPLEX, 1.0, (20, 20, 20), 2)
    ok, buf = cv2.imencode(".jpg", page, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return bytes(buf)


class KioskPeer:
    """aiortc standing in for the kiosk: face camera, document camera, microphone."""

    def __init__(self) -> None:
        self.pc = peer_connection()
        self.incoming = IncomingMedia(pictures=False)
        for colour in ((40, 120, 200), (230, 230, 230)):
            self.pc.addTrack(synthetic_video(colour, (640, 480)))
        self.pc.addTrack(tone())
        self.pc.on("track", self.incoming.attach)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def answer(self, sdp: str) -> None:
        from aiortc import RTCSessionDescription

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))


@pytest.fixture
async def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, Any]]:
    with netns.test_host("c") as host:
        monkeypatch.setenv("TB_TEST_TURN_SECRET", "secret")
        import aioice.ice

        # the kiosk peer offers only its address towards the test host: no other interface
        monkeypatch.setattr(aioice.ice, "get_host_addresses",
                            lambda use_ipv4, use_ipv6: [host.host_ip])
        hub, runner, hub_url = await start_hub(tmp_path, grace_seconds=5.0)
        desk_key = hub.credentials.create("desk-1", ClientKind.DESK, centres=["c1"])
        kiosk_key = hub.credentials.create("k1", ClientKind.KIOSK, site="s1")
        db_url = f"sqlite:///{tmp_path / 'desk.db'}"
        await asyncio.to_thread(upgrade, db_url)
        desk = DeskApp(DeskConfig(database=db_url, files_dir=tmp_path / "files",
                                  centres=["c1"], matters={"c1": ["m1"]},
                                  kiosk_credentials=tmp_path / "creds.json"),
                       files_key=parse_key(new_key()))
        async with desk.db() as db:
            await add_user(db, "clerk-a", "王芳", PASSWORD, Role.CLERK, ["c1"])
            await db.commit()
        desk.hub = HubLink(HubClient(hub_url, "desk-1", ClientKind.DESK, desk_key,
                                     reconnection=False), ["c1"])
        await desk.hub.start()
        server = TestServer(desk.app, host=host.host_ip)
        await server.start_server()
        kiosk = HubClient(hub_url, "k1", ClientKind.KIOSK, kiosk_key, reconnection=False)
        await kiosk.connect()
        yield {"host": host, "desk": desk, "url": str(server.make_url("")).rstrip("/"),
               "kiosk": kiosk, "kiosk_key": kiosk_key, "tmp": tmp_path}
        with contextlib.suppress(Exception):
            await kiosk.close()
        await server.close()
        await runner.cleanup()


async def _upload_case(base: str, key: Any) -> None:
    import aiohttp

    page = _page_jpeg()
    identity = json.dumps({
        "card": {"card_type": "resident", "name": "沈德顺", "id_number": "32050919490312001X",
                 "id_number_valid": True, "valid_from": "2016-05-20", "valid_long_term": True},
        "verification": {"decision": "match", "distance": 0.31, "threshold": 0.47,
                         "liveness": {"passed": True, "simulated": True}},
        "simulated": True}, ensure_ascii=False).encode()
    manifest = Manifest(case_id="case-0001", kiosk_id="k1", centre="c1", matter="m1",
                        created_at=datetime.now(UTC), simulated=True,
                        files=[describe_file("proxy-letter-1.jpg", page, "image/jpeg",
                                             "proxy_letter"),
                               describe_file("identity.json", identity, "application/json")])
    form = aiohttp.FormData()
    form.add_field("manifest", manifest.model_dump_json())
    form.add_field("signature", sign(manifest, key))
    form.add_field("file", page, filename="proxy-letter-1.jpg", content_type="image/jpeg")
    form.add_field("file", identity, filename="identity.json", content_type="application/json")
    async with aiohttp.ClientSession() as s, s.post(
            f"{base}/api/intake", data=form, headers={"X-Tongban-Kiosk": "k1"}) as r:
        assert r.status == 201, await r.text()


async def test_clerk_takes_a_call_and_decides_in_chromium(stack: dict[str, Any]) -> None:
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    base, kiosk = stack["url"], stack["kiosk"]
    await _upload_case(base, stack["kiosk_key"])
    wrapper = netns.chromium_in(stack["host"], stack["tmp"])
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--unsafely-treat-insecure-origin-as-secure={base}"]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(wrapper), args=args)
        # the desk forbids eval (CSP); Playwright's waits evaluate JavaScript, so the test
        # context alone bypasses the policy
        page = await browser.new_page(viewport={"width": 1366, "height": 768}, bypass_csp=True)
        await page.goto(base + "/")
        await page.screenshot(path=str(ARTIFACTS / "desk-login.png"))
        await page.fill("#username", "clerk-a")
        await page.fill("#password", PASSWORD)
        await page.click("#login-button")
        await page.wait_for_selector("#queue-view:not([hidden])")
        await asyncio.sleep(0.5)  # the clerk's availability reaches the hub
        await kiosk.send("ticket.request", p.TicketRequest(centre="c1", matter="m1",
                                                           case_id="case-0001"))
        accept = await page.wait_for_selector("button.accept", timeout=10_000)
        await page.screenshot(path=str(ARTIFACTS / "desk-queue.png"))
        accepted_at = time.perf_counter()
        assert accept is not None
        await accept.click()
        start = await kiosk.next("call.start", timeout=10)
        peer = KioskPeer()
        await kiosk.send("call.offer", p.CallOffer(call_id=start.call_id,
                                                   sdp=await peer.offer()))
        answer = await kiosk.next("call.answer", timeout=15)
        await peer.answer(answer.sdp)
        await page.wait_for_function(
            "document.getElementById('citizen').videoWidth > 0", timeout=15_000)
        first_frame_ms = (time.perf_counter() - accepted_at) * 1000
        await page.wait_for_function(
            "Number(document.getElementById('quality').dataset.fps || 0) > 5", timeout=15_000)
        await page.wait_for_function(
            "document.getElementById('document').videoWidth > 0", timeout=15_000)
        await page.screenshot(path=str(ARTIFACTS / "desk-call.png"))
        deadline = time.monotonic() + 10
        got = peer.incoming
        while (got.video_frames < 30 or got.audio_frames < 50) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        directions = [line for line in answer.sdp.splitlines()
                      if line in ("a=sendrecv", "a=recvonly", "a=sendonly", "a=inactive")]
        assert peer.incoming.video_frames >= 30, f"no video from the clerk's browser ({directions})"
        assert peer.incoming.audio_frames >= 50 and peer.incoming.audio_level > 0, \
            "no audio from the clerk"
        has_audio = await page.evaluate(
            "() => { const a = document.getElementById('citizen-audio');"
            " return !!a && a.srcObject.getAudioTracks().length > 0; }")
        assert has_audio
        await page.wait_for_selector("#identity-table", timeout=10_000)
        identity_text = await page.text_content("#identity")
        assert identity_text is not None
        assert "距离 0.31" in identity_text and "（模拟）" in identity_text
        assert "签名已验证" in (await page.text_content("#signature") or "")
        await page.click("button.open-file >> nth=0")
        await page.wait_for_function(
            "document.getElementById('page').naturalWidth >= 990", timeout=10_000)
        await page.click("#zoom-in")
        await page.screenshot(path=str(ARTIFACTS / "desk-case.png"))
        await page.check("input[value=accept_pending]")
        await page.fill("#missing", "参保证明")
        await page.fill("#commitment", "十个工作日内补交")
        await page.click("#decide")
        await page.wait_for_function(
            "document.getElementById('decision-result').textContent.includes('容缺受理')",
            timeout=10_000)
        result = await page.text_content("#decision-result")
        receipt = await kiosk.next("call.command", timeout=10)
        assert receipt.name == "receipt" and "容缺受理" in str(receipt.args["text"])
        await page.screenshot(path=str(ARTIFACTS / "desk-decision.png"))
        await browser.close()
    await peer.pc.close()
    assert result is not None and "补交期限" in result
    desk: DeskApp = stack["desk"]
    async with desk.db() as db:
        from sqlalchemy import select

        from remote_desk.models import AuditEntry

        actions = [e.action for e in (await db.execute(select(AuditEntry))).scalars()]
    assert {"login", "intake", "view", "download", "decide"} <= set(actions)
    (ARTIFACTS / "desk-call.json").write_text(json.dumps(
        {"accept_to_first_frame_ms": round(first_frame_ms), "kiosk_received_frames":
         peer.incoming.video_frames, "kiosk_received_audio_frames": peer.incoming.audio_frames}))
