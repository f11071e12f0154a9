"""The touch screen in Chromium: every screen visited, text contrast >= 4.5:1 and body type
>= 24 px measured on each, a screenshot of each saved in test-artifacts/."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from kiosk import events as ev
from kiosk.catalogue import load_catalogue
from kiosk.session import Session, State
from kiosk.web import TouchScreen
from signaling import protocol as p

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None,
                                reason="Debian's chromium is not installed (make test installs "
                                       "it as root)")

# for every element with its own text: contrast against the first opaque background behind it
MEASURE = """() => {
  const lum = (c) => { const v = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map((x) => {
    x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
  const opaque = (el) => { for (let e = el; e; e = e.parentElement) {
      const bg = getComputedStyle(e).backgroundColor;
      if (bg && !bg.startsWith("rgba(0, 0, 0, 0)") && bg !== "transparent") return bg; }
    return "rgb(255, 255, 255)"; };
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    const fixed = getComputedStyle(el).position === "fixed";
    if (el.hidden || (el.offsetParent === null && !fixed)) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(el);
    const a = lum(style.color), b = lum(opaque(el));
    out.push({ text: el.textContent.trim().slice(0, 20), size: parseFloat(style.fontSize),
               contrast: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05) });
  }
  return out;
}"""


@pytest.fixture
async def screen() -> AsyncIterator[tuple[str, Session]]:
    session = Session(load_catalogue(), now=time.monotonic(), last_touch=time.monotonic())
    server = TestServer(TouchScreen(session).app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), session
    await server.close()


def _drive(session: Session, target: State) -> None:
    """Walk the session to ``target`` as devices, the hub and the citizen would."""
    t = time.monotonic()
    steps: list[ev.SessionEvent] = [
        ev.Touch(), ev.ChooseCentre(centre="yongjia"),
        ev.ChooseMatter(matter="yb-ydjz-ba", by_proxy=True),
        ev.CardRead(card={"card_type": "resident"}),
        ev.FaceResult(decision="match", liveness=True),
    ]
    order = [State.CHOOSE_CENTRE, State.CHOOSE_MATTER, State.READ_CARD, State.VERIFY_FACE,
             State.CAPTURE]
    for event, reached in zip(steps, order, strict=True):
        session.handle(event, t)
        if reached is target:
            return
    if target is State.CAPTURE:
        return
    for code in ("id_card", "proxy_letter", "agent_id_card"):
        session.handle(ev.Captured(material=code), t)
        session.handle(ev.Done(), t)
    session.handle(ev.Skip(), t)
    if target is State.CLOSED:
        closed = p.ServiceClosed(centre="yongjia", matter="yb-ydjz-ba", reason="outside_hours",
                                 next_opening="2026-11-27T08:30:00+08:00")
        event = ev.from_hub(closed, case_id=None, call_id=None, today=date(2026, 11, 26))
        assert event is not None
        session.handle(event, t)
        return
    session.handle(ev.TicketChanged(ticket=p.TicketUpdate(
        ticket_id="ticket-0001", case_id="case-0001", centre="yongjia", matter="yb-ydjz-ba",
        state=p.TicketState.WAITING, position=3, expected_wait_s=900)), t)
    if target is State.WAITING:
        return
    if target is State.HUB_UNREACHABLE:
        session.handle(ev.HubUnreachable(), t)
        return
    session.handle(ev.CallStarted(call=p.CallStart(
        call_id="call-0001", ticket_id="ticket-0001", case_id="case-0001", role="offerer",
        clerk_id="clerk-a", ice_servers=[])), t)
    if target is State.IN_CALL:
        return
    session.handle(ev.ReceiptGiven(receipt=ev.Receipt(case_number="yongjia-20261126-00001",
                                                      kind="accept")), t)


SCREENS = [State.IDLE, State.CHOOSE_CENTRE, State.CHOOSE_MATTER, State.READ_CARD,
           State.VERIFY_FACE, State.CAPTURE, State.CLOSED, State.WAITING,
           State.HUB_UNREACHABLE, State.IN_CALL, State.RESULT, State.DEVICE_FAULT]


async def test_every_screen_is_large_high_contrast_and_captured(
        screen: tuple[str, Session]) -> None:
    from playwright.async_api import async_playwright

    base, session = screen
    ARTIFACTS.mkdir(exist_ok=True)
    worst: dict[str, float] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--autoplay-policy=no-user-gesture-required"])
        page = await browser.new_page(viewport={"width": 1920, "height": 1080})
        for state in SCREENS:
            session.handle(ev.Cancel(), time.monotonic()) if session.state is not State.IDLE \
                else None
            if state is State.DEVICE_FAULT:
                _drive(session, State.READ_CARD)
                session.handle(ev.DeviceFault(device="idcard"), time.monotonic())
            elif state is not State.IDLE:
                _drive(session, state)
            assert session.state is state
            await page.goto(base + "/")
            await page.wait_for_function(f"document.body.dataset.state === '{state.value}'")
            texts = await page.evaluate(MEASURE)
            assert texts, f"{state}: no text on the screen"
            low = [t for t in texts if t["contrast"] < 4.5]
            small = [t for t in texts if t["size"] < 24]
            assert not low, f"{state.value}: contrast below 4.5:1: {low}"
            assert not small, f"{state.value}: type below 24 px: {small}"
            worst[state.value] = min(t["contrast"] for t in texts)
            await page.screenshot(path=str(ARTIFACTS / f"kiosk-{state.value}.png"))
        # a touch on the page reaches the session: start from idle
        session.handle(ev.Cancel(), time.monotonic())
        await page.goto(base + "/")
        await page.click("button:has-text('开始办理')")
        await page.wait_for_function("document.body.dataset.state === 'choose_centre'")
        await page.click("button:has-text('永嘉县政务服务中心')")
        await page.wait_for_function("document.body.dataset.state === 'choose_matter'")
        assert await page.locator("button:has-text('异地贷款缴存证明')").count() == 1
        await browser.close()
    assert session.state is State.CHOOSE_MATTER and session.context.centre == "yongjia"
    assert min(worst.values()) >= 4.5


async def test_live_pictures_and_receipt_qr_endpoints(screen: tuple[str, Session]) -> None:
    import aiohttp

    base, session = screen
    async with aiohttp.ClientSession() as s:
        async with s.get(base + "/api/video/nothing.mjpg") as r:
            assert r.status == 404
        async with s.get(base + "/api/receipt.svg") as r:
            assert r.status == 404  # no receipt, no code
        session.context.receipt = ev.Receipt(case_number="yongjia-20261126-00001", kind="accept")
        async with s.get(base + "/api/receipt.svg") as r:
            assert r.status == 200 and r.content_type == "image/svg+xml"
            assert b"<svg" in await r.read()
        async with s.post(base + "/api/event", json={"event": "card_read",
                                                     "data": {"card": {}}}) as r:
            assert r.status == 403  # only touches come from the screen
        async with s.post(base + "/api/event", json={"event": "choose_centre",
                                                     "data": {"centre": "<script>"}}) as r:
            assert r.status == 403 and "centre" in await r.text()  # validated at the door
        async with s.get(base + "/api/speech/queue-99999-1.wav") as r:
            assert r.status == 404  # only the sentences the kiosk says


async def test_spoken_prompts_cover_the_liveness_turns(tmp_path: Path) -> None:
    import aiohttp

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (the page falls back to the browser's voice)")
    session = Session(load_catalogue(), now=time.monotonic(), last_touch=time.monotonic())
    server = TestServer(TouchScreen(session, tmp_path / "speech").app, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as s:
        for key in ("idle", "still_there", "liveness_turn_left", "liveness_turn_right",
                    "queue-3-16"):
            async with s.get(f"{base}/api/speech/{key}.wav") as r:
                assert r.status == 200, key
                assert (await r.read())[:4] == b"RIFF"
        async with s.get(f"{base}/api/speech/anything_else.wav") as r:
            assert r.status == 404  # only the kiosk's own sentences, never free text
    # the queue's sentences are not kept: only the fixed prompts are cached
    assert sorted(p.name for p in (tmp_path / "speech").iterdir()) == [
        "idle.wav", "liveness_turn_left.wav", "liveness_turn_right.wav", "still_there.wav"]
    await server.close()
