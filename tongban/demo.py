"""``tongban demo``: the hub, a desk and one kiosk on this machine, every device SIMULATED.

The virtual ID card reader runs on a pty pair with a fictional card whose photo is
scikit-image's public-domain astronaut; the face camera is that astronaut, animated to follow
the liveness prompts; the document camera is the synthetic one. Hub, desk and kiosk are the
real services, in one process, with state in a temporary folder.

``--auto`` plays one whole case headless: a kiosk bot presses the touch screen's buttons and a
clerk bot drives the desk page in Debian's Chromium (Playwright): log in, accept, look at a
material, decide. ``--test-hosts`` (root) puts the clerk's browser on a test host in its own
network namespace, so that traffic stays on this machine's own test network.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from tongban.output import emit
from tongban.serving import StopSignal, run_interruptible, run_service

DEMO_CLERK = "demo-clerk"
DEMO_CENTRE = "yongjia"
DEMO_MATTER = "gjj-jczm"
DEMO_CARD = "resident-elderly"


class DemoError(Exception):
    """The demo could not run (one line for the user)."""

    exit_code = 40


# -- the read-only card demo (kept: the quickest look at the reader) -------------------------

async def _read_samples(names: list[str]) -> list[dict[str, Any]]:
    from devices.idcard.cards import load_card
    from devices.idcard.photo import SimulatedPhotoDecoder
    from devices.idcard.reader import IdCardReader, ReaderConfig
    from devices.idcard.simulator import VirtualReader

    results = []
    with VirtualReader(reread="stays") as sim:
        config = ReaderConfig(port=sim.path)
        async with IdCardReader(config, SimulatedPhotoDecoder()) as reader:
            await reader.sam_status()
            sam = str(await reader.sam_id())
            for name in names:
                sim.insert(load_card(name))
                read = await reader.read_card()
                sim.remove()
                results.append({"sample": name, "sam_id": sam, **read.to_json()})
    return results


def _cards_demo(as_json: bool) -> None:
    from devices.idcard.cards import sample_names

    results = asyncio.run(_read_samples(sample_names()))
    if as_json:
        emit({"ok": True, "simulated": True, "reads": results}, as_json=True)
        return
    click.echo("SIMULATED ID card reader on a pty, real driver, fictional cards")
    for r in results:
        valid = "valid" if r["id_number_valid"] else "NOT VALID"
        click.echo(f"  {r['sample']:<24} {r['card_type']:<24} {r['name']:<8} "
                   f"{r['id_number']:<20} {valid:<9} {r['timings']['total_ms']:.0f} ms")


# -- the stack ----------------------------------------------------------------------------------

@dataclass
class KioskHandle:
    """One kiosk of the stack: its service, its SIMULATED card reader and card, its screen."""

    service: Any
    sim: Any
    card: Any
    url: str


@dataclass
class Stack:
    """Everything the demo runs, and where."""

    folder: Path
    hub_url: str = ""
    desk_url: str = ""
    kiosk_url: str = ""
    password: str = ""
    host: Any = None
    hub: Any = None
    desk: Any = None
    kiosk: Any = None
    sim: Any = None
    card: Any = None
    log_files: list[Path] = field(default_factory=list)
    kiosks: list[KioskHandle] = field(default_factory=list)
    """Every kiosk (the first is also ``kiosk``/``sim``/``card``/``kiosk_url``)."""
    hub_runner: Any = None
    restart_hub: Any = None
    """``await stack.restart_hub(down_s)``: stop the hub, wait, start a new one (same port)."""


def _demo_directory() -> Any:
    """The sample directory with every centre open around the clock (a demo runs at night)."""
    from signaling.directory import load_directory

    directory = load_directory()
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    centres = [c.model_copy(update={"hours": {d: ["00:00-24:00"] for d in days},
                                    "chinese_calendar": False}) for c in directory.centres]
    return directory.model_copy(update={"centres": centres})


def _demo_card(folder: Path, sample: str = DEMO_CARD) -> Any:
    """A fictional card of the samples (the elderly resident by default), with the astronaut
    as the chip photo."""
    import cv2

    from devices.facecam import astronaut, card_photo_from_portrait
    from devices.idcard.cards import load_card

    photo = folder / "sim-card-photo.png"
    if not photo.exists():
        cv2.imwrite(str(photo), card_photo_from_portrait(astronaut()))
    return load_card(sample).model_copy(update={"photo": str(photo)})


async def _site(app: Any, host: str, port: int) -> tuple[Any, int]:
    """Serve ``app``; stopping it closes its WebSockets and streams instead of waiting."""
    from aiohttp import web

    from tongban import serving

    runner = serving.runner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except OSError:  # the usual port is taken: any free one
        await runner.cleanup()
        runner = serving.runner(app)
        await runner.setup()
        await web.TCPSite(runner, host, 0).start()
    return runner, int(runner.addresses[0][1])


def _port_free(port: int) -> bool:
    """Whether 127.0.0.1:``port`` can be listened on now."""
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


KIOSK_CARDS = (DEMO_CARD, "resident", "hk-macao-taiwan")
"""The fictional sample card each kiosk's citizen carries (all with the astronaut's face)."""


@contextlib.asynccontextmanager
async def run_stack(*, test_hosts: bool, folder: Path | None = None,
                    ports: tuple[int, int, int] = (0, 0, 0), redis: str | None = None,
                    browser_grace_s: float = 15.0, clerks: int = 1,
                    restart_after_s: float = 4.0, kiosks: int = 1,
                    offer_seconds: float = 60.0, directory: Any = None,
                    database: str | None = None,
                    clerk_centres: dict[str, list[str]] | None = None
                    ) -> AsyncIterator[Stack]:
    """Hub, desk and kiosk(s) with simulated devices; ports (hub, desk, first kiosk screen).

    ``redis``: the hub keeps its state there (so that it can be restarted); ``clerks``: how
    many demo clerk accounts (demo-clerk, demo-clerk-2, ...) share the one password, each
    at both centres unless ``clerk_centres`` names theirs; ``kiosks``: how many kiosks
    (kiosk-demo, kiosk-demo-2, ...), each with its own simulated devices and citizen;
    ``directory``: the hub's (default: the sample one, open around the clock);
    ``database``: the desk's SQLAlchemy URL (default: SQLite in the folder)."""
    from aiohttp import web
    from sqlalchemy import select

    from remote_desk.app import DeskApp
    from remote_desk.blobs import new_key, parse_key
    from remote_desk.config import DeskConfig
    from remote_desk.db import upgrade
    from remote_desk.hublink import HubLink
    from remote_desk.models import User
    from remote_desk.users import Role, add_user
    from signaling.client import HubClient
    from signaling.hub import Hub, HubConfig
    from signaling.protocol import ClientKind
    from tongban import logs, netns, serving

    owned = folder is None
    folder = Path(tempfile.mkdtemp(prefix="tongban-demo-")) if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    stack = Stack(folder)
    log_file = folder / "demo.log"
    handler = logs.add_file(log_file)
    stack.log_files.append(log_file)
    exits = contextlib.AsyncExitStack()
    try:
        bind = "127.0.0.1"
        if test_hosts:
            reason = netns.available()
            if reason is not None:
                raise DemoError(f"--test-hosts: {reason}")
            stack.host = exits.enter_context(netns.test_host("demo"))
            bind = stack.host.host_ip
            import aioice.ice

            # the kiosk's peer offers only its address towards the clerk's test host
            original = aioice.ice.get_host_addresses
            aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [bind]
            exits.callback(setattr, aioice.ice, "get_host_addresses", original)

        # the hub
        centres = ["yongjia", "wujiang"]
        hub_config = HubConfig(credentials=folder / "hub-credentials.json", grace_seconds=10,
                               offer_seconds=offer_seconds, redis=redis)
        directory = directory or _demo_directory()
        hub = Hub(hub_config, directory=directory)
        runner, hub_port = await _site(hub.app, "127.0.0.1", ports[0])
        stack.hub, stack.hub_url = hub, f"http://127.0.0.1:{hub_port}"
        stack.hub_runner = runner

        async def stop_hub() -> None:
            await stack.hub_runner.cleanup()

        async def restart_hub(down_s: float = 1.0) -> None:
            await stop_hub()
            await asyncio.sleep(down_s)
            stack.hub = Hub(hub_config, directory=directory)
            stack.hub_runner = serving.runner(stack.hub.app)
            await stack.hub_runner.setup()
            await web.TCPSite(stack.hub_runner, "127.0.0.1", hub_port).start()

        stack.restart_hub = restart_hub
        exits.push_async_callback(stop_hub)
        desk_key = hub.credentials.create("desk-demo", ClientKind.DESK, centres=centres)
        kiosk_ids = ["kiosk-demo" if n == 0 else f"kiosk-demo-{n + 1}" for n in range(kiosks)]
        kiosk_keys = [hub.credentials.create(k, ClientKind.KIOSK, site="shengze")
                      for k in kiosk_ids]

        # the desk, with a demo clerk
        db_url = database or f"sqlite:///{folder / 'desk.db'}"
        await asyncio.to_thread(upgrade, db_url)
        matters = {"yongjia": ["yb-ydjz-ba", "gjj-ydgf-tq", "gjj-jczm"],
                   "wujiang": ["gjj-ydgf-tq", "gjj-jczm"]}
        desk = DeskApp(DeskConfig(database=db_url, files_dir=folder / "desk-files",
                                  centres=centres, matters=matters,
                                  kiosk_credentials=folder / "hub-credentials.json"),
                       files_key=parse_key(new_key()))
        exits.push_async_callback(desk.engine.dispose)
        stack.password = "demo-" + os.urandom(6).hex()
        async with desk.db() as db:
            for n in range(clerks):
                name = DEMO_CLERK if n == 0 else f"{DEMO_CLERK}-{n + 1}"
                if (await db.execute(select(User).where(User.username == name))).first() \
                        is None:
                    await add_user(db, name, f"演示坐席{n + 1}", stack.password, Role.CLERK,
                                   (clerk_centres or {}).get(name, centres))
            await db.commit()
        desk.hub = HubLink(HubClient(stack.hub_url, "desk-demo", ClientKind.DESK, desk_key),
                           centres, browser_grace_s=browser_grace_s)
        await desk.hub.start()
        exits.push_async_callback(desk.hub.close)
        runner, port = await _site(desk.app, bind, ports[1])
        exits.push_async_callback(runner.cleanup)
        stack.desk, stack.desk_url = desk, f"http://{bind}:{port}"

        # the kiosks, each with its own simulated devices and citizen
        for n, (kiosk_id, kiosk_key) in enumerate(zip(kiosk_ids, kiosk_keys, strict=True)):
            handle = await _start_kiosk(stack, exits, n, kiosk_id, kiosk_key,
                                        ports[2] if n == 0 else 0, restart_after_s)
            stack.kiosks.append(handle)
        first = stack.kiosks[0]
        stack.kiosk, stack.sim, stack.card = first.service, first.sim, first.card
        stack.kiosk_url = first.url
        yield stack
    finally:
        await exits.aclose()
        import logging

        logging.getLogger().removeHandler(handler)
        handler.close()
        if owned and not os.environ.get("TONGBAN_DEMO_KEEP"):
            for path in folder.glob("*"):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                elif path not in stack.log_files:
                    path.unlink(missing_ok=True)


async def _start_kiosk(stack: Stack, exits: contextlib.AsyncExitStack, n: int, kiosk_id: str,
                       key: Any, port: int, restart_after_s: float) -> KioskHandle:
    """One kiosk with SIMULATED devices: a virtual card reader on a pty, the animated face,
    the synthetic document camera."""
    from aiohttp import web

    from devices.camera import CameraConfig
    from devices.facecam import FaceCamera
    from devices.idcard.photo import PhotoDecoderConfig
    from devices.idcard.reader import IdCardReader, ReaderConfig
    from devices.idcard.simulator import VirtualReader
    from devices.scanner.camera import DocumentCamera
    from devices.scanner.pipeline import ScannerConfig
    from kiosk.catalogue import load_catalogue
    from kiosk.config import KioskConfig, KioskSection
    from kiosk.identity.config import FaceConfig
    from kiosk.service import Devices, KioskService

    folder = stack.folder
    suffix = "" if n == 0 else f"-{n + 1}"
    if port and not _port_free(port):  # the usual port is taken (another demo): any free one
        port = 0
    sim = exits.enter_context(VirtualReader(reread="stays"))
    card = _demo_card(folder, KIOSK_CARDS[n % len(KIOSK_CARDS)])
    reader = IdCardReader(ReaderConfig(port=sim.path, poll_interval=0.3,
                                       photo_decoder=PhotoDecoderConfig(kind="simulated")))
    face_cam = CameraConfig(source="sim", preview_size=(640, 480),
                            capture_size=(1280, 960), fps=15)
    doc_cam = CameraConfig(source=f"sim:{7 + n}", preview_size=(960, 720),
                           capture_size=(1920, 1440), fps=10)
    config = KioskConfig(
        kiosk=KioskSection(kiosk_id=kiosk_id, hub_url=stack.hub_url,
                           desk_url=stack.desk_url, spool_dir=folder / f"kiosk-spool{suffix}",
                           work_dir=folder / f"kiosk-work{suffix}", screen_port=port,
                           simulated=True, restart_after_s=restart_after_s),
        scanner=ScannerConfig(camera=doc_cam, stable_seconds=0.6, max_long_side=2000),
        face=FaceConfig(camera=face_cam))
    kiosk = KioskService(config, load_catalogue(), key,
                         Devices(reader, FaceCamera(face_cam), DocumentCamera(doc_cam)))

    async def insert_card(request: web.Request) -> web.Response:
        del request
        sim.insert(card)
        return web.json_response({"inserted": "SIMULATED sample card"})

    kiosk.screen.app.router.add_post("/api/sim/card", insert_card)
    try:
        await kiosk.start()
    except BaseException:  # its cameras and hub connection are already going: stop them
        await kiosk.stop()
        raise
    exits.push_async_callback(kiosk.stop)
    return KioskHandle(kiosk, sim, card, str(kiosk.screen_url).rstrip("/"))


# -- the bots -----------------------------------------------------------------------------------

class KioskBot:
    """A citizen pressing the touch screen's buttons (over its own HTTP API)."""

    def __init__(self, stack: Stack, kiosk: KioskHandle | None = None) -> None:
        self.stack = stack
        self.kiosk = kiosk or stack.kiosks[0]
        self.base = self.kiosk.url

    async def screen(self) -> dict[str, Any]:
        import aiohttp

        async with aiohttp.ClientSession() as s, s.get(self.base + "/api/screen") as r:
            data: dict[str, Any] = await r.json()
            return data

    async def press(self, event: str, **data: Any) -> dict[str, Any]:
        import aiohttp

        async with aiohttp.ClientSession() as s, s.post(
                self.base + "/api/event", json={"event": event, "data": data}) as r:
            body: dict[str, Any] = await r.json()
            if r.status != 200:
                raise DemoError(f"kiosk refused {event}: {body.get('error')}")
            return body

    async def wait(self, *states: str, timeout: float, still: bool = True) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = await self.screen()
            if screen["state"] in states:
                return screen
            if screen.get("still_there") and still:
                await self.press("still_here")
            await asyncio.sleep(0.2)
        raise DemoError(f"kiosk did not reach {'/'.join(states)} within {timeout:.0f} s "
                        f"(at {(await self.screen())['state']})")

    async def apply(self, centre: str, matter: str, *, skip_non_key: bool = False,
                    step: Any = None) -> None:
        """From the idle screen to the queue: destination, matter, card, face, materials."""
        step = step or (lambda name: None)
        await self.press("touch")
        await self.press("choose_centre", centre=centre)
        await self.press("choose_matter", matter=matter)
        await self.wait("read_card", timeout=5)
        step("choose_matter")
        self.kiosk.sim.insert(self.kiosk.card)
        await self.wait("verify_face", timeout=15)
        step("read_card")
        retakes = 0
        deadline = time.monotonic() + 90
        screen = await self.screen()
        while screen["state"] != "capture" and time.monotonic() < deadline:
            if screen.get("face") == "fail" and retakes < 2:
                retakes += 1  # the citizen presses "try again"
                await self.press("retake")
            await asyncio.sleep(0.3)
            screen = await self.screen()
        screen = await self.wait("capture", timeout=5)
        step("verify_face")
        self.kiosk.sim.remove()  # the citizen takes the card back
        while screen["state"] == "capture":
            if skip_non_key and not screen["key"]:
                screen = await self.press("skip")
                continue
            number = screen["step"]
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                screen = await self.screen()
                if screen.get("still_there"):
                    await self.press("still_here")
                if screen["state"] != "capture" or screen.get("captured"):
                    break
                await asyncio.sleep(0.3)
            else:
                raise DemoError(f"material {number} was not captured within 90 s")
            screen = await self.press("done")
        step("capture")


class ClerkBot:
    """A clerk in Debian's Chromium, driven by Playwright."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.page: Any = None
        self._pw: Any = None
        self._browser: Any = None

    async def start(self) -> None:
        from playwright.async_api import async_playwright

        from tongban import netns

        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        if not Path(chromium).exists():
            raise DemoError("Debian's chromium is not installed (make test installs it as root)")
        if self.stack.host is not None:
            chromium = str(netns.chromium_in(self.stack.host, self.stack.folder))
        args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--unsafely-treat-insecure-origin-as-secure={self.stack.desk_url}"]
        self._pw = await async_playwright().start()
        self._browser = await self._pw.chromium.launch(executable_path=chromium, args=args)
        # Playwright's waits evaluate JavaScript, which the desk's CSP forbids: only the
        # bot's context bypasses the policy
        self.page = await self._browser.new_page(viewport={"width": 1366, "height": 900},
                                                 bypass_csp=True)
        await self.page.goto(self.stack.desk_url + "/")
        await self.page.fill("#username", DEMO_CLERK)
        await self.page.fill("#password", self.stack.password)
        await self.page.click("#login-button")
        await self.page.wait_for_selector("#queue-view:not([hidden])")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._browser is not None:
                await self._browser.close()
        with contextlib.suppress(Exception):
            if self._pw is not None:
                await self._pw.stop()

    async def stats(self) -> dict[str, float]:
        """Frames decoded and the audio level received, from the browser's getStats."""
        result: dict[str, float] = await self.page.evaluate("""async () => {
          const out = { frames: 0, audio_level: 0, audio_energy: 0 };
          if (!state.pc) return out;
          const report = await state.pc.getStats();
          report.forEach((s) => {
            if (s.type !== "inbound-rtp") return;
            if (s.kind === "video") out.frames += s.framesDecoded || 0;
            if (s.kind === "audio") {
              out.audio_level = Math.max(out.audio_level, s.audioLevel || 0);
              out.audio_energy += s.totalAudioEnergy || 0; }
          });
          return out; }""")
        return result


# -- the whole case -------------------------------------------------------------------------------

async def _case(stack: Stack, artifacts: Path | None) -> dict[str, Any]:
    steps: dict[str, float] = {}
    started = mark = time.perf_counter()

    def step(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        steps[name] = round((now - mark) * 1000, 1)
        mark = now

    kiosk, bot, clerk = stack.kiosk, KioskBot(stack), ClerkBot(stack)
    out: dict[str, Any] = {"ok": False, "simulated": True}
    try:
        await clerk.start()
        step("clerk_login")
        await bot.apply(DEMO_CENTRE, DEMO_MATTER, step=step)
        await bot.wait("waiting", "in_call", timeout=20)
        accept = await clerk.page.wait_for_selector("button.accept", timeout=30_000)
        step("queue")
        accepted_at = time.perf_counter()
        await accept.click()
        await clerk.page.wait_for_function(
            "document.getElementById('citizen').videoWidth > 0", timeout=30_000,
            polling="raf")
        out["call_setup_ms"] = round((time.perf_counter() - accepted_at) * 1000, 1)
        step("accept_to_first_frame")
        await bot.wait("in_call", timeout=10)
        await clerk.page.wait_for_function(
            "document.getElementById('document').videoWidth > 0", timeout=20_000)
        await clerk.page.wait_for_selector("#identity-table", timeout=30_000)
        await clerk.page.click("button.open-file:has-text('loan_application')")
        await clerk.page.wait_for_function(
            "document.getElementById('page').naturalWidth > 0", timeout=15_000)
        await asyncio.sleep(3)  # the clerk talks with the citizen: media flows both ways
        browser = await clerk.stats()
        if artifacts is not None:
            artifacts.mkdir(parents=True, exist_ok=True)
            await clerk.page.screenshot(path=str(artifacts / "demo-clerk-call.png"))
            await _kiosk_screenshot(stack, artifacts / "demo-kiosk-call.png", "#video-clerk")
        step("review")
        await clerk.page.check("input[value=accept]")
        await clerk.page.click("#decide")
        await clerk.page.wait_for_function(
            "document.getElementById('decision-result').textContent.includes('受理编号')",
            timeout=15_000)
        screen = await bot.wait("result", timeout=20)
        receipt = screen.get("receipt") or {}
        out["case_number"] = receipt.get("case_number")
        step("decision")
        if artifacts is not None:
            await _kiosk_screenshot(stack, artifacts / "demo-kiosk-result.png")
        await bot.press("finish")
        await bot.wait("idle", timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (kiosk.spool.pending() or not kiosk.delivered):
            await asyncio.sleep(0.2)
        step("wipe")
        case_id = kiosk.report.case_ids[-1] if kiosk.report.case_ids else None
        decision, verified, total = await _desk_view(stack, case_id)
        report = kiosk.report
        out.update({
            "case_id": case_id, "decision": decision,
            "video_frames": {"kiosk_to_clerk": int(browser["frames"]),
                             "clerk_to_kiosk": report.video_frames},
            "audio": {"kiosk_to_clerk": round(float(browser["audio_level"]), 4),
                      "clerk_to_kiosk": round(report.audio_level / 32768, 4)},
            "files_verified": verified, "files_sent": report.files_sent,
            "kiosk_residue": kiosk.residue(), "restarts": report.restarts,
        })
        out["ok"] = bool(case_id and decision == "accept" and out.get("call_setup_ms")
                         and out["video_frames"]["kiosk_to_clerk"] > 0
                         and report.video_frames > 0 and out["audio"]["kiosk_to_clerk"] > 0
                         and report.audio_level > 0 and verified == total == report.files_sent
                         and not out["kiosk_residue"])
    finally:
        await clerk.close()
    steps["total"] = round((time.perf_counter() - started) * 1000, 1)
    out["steps_ms"] = steps
    return out


async def _kiosk_screenshot(stack: Stack, path: Path, selector: str = "#qr") -> None:
    """The kiosk's own screen, in a second headless Chromium on loopback."""
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium,
                                           args=["--no-sandbox", "--disable-gpu"])
        page = await browser.new_page(viewport={"width": 1280, "height": 1024})
        await page.goto(stack.kiosk_url + "/")
        await page.wait_for_selector(selector, timeout=5000)
        await asyncio.sleep(0.5)  # the live pictures' first frames
        await page.screenshot(path=str(path))
        await browser.close()


async def _desk_view(stack: Stack, case_id: str | None) -> tuple[str | None, int, int]:
    """The case's decision at the desk, and how many of its files check against their hash."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from remote_desk.blobs import BlobError
    from remote_desk.models import Case

    if case_id is None:
        return None, 0, 0
    async with stack.desk.db() as db:
        case = (await db.execute(select(Case).where(Case.id == case_id)
                                 .options(selectinload(Case.files)))).scalar_one_or_none()
        if case is None:
            return None, 0, 0
        decision = (case.decision or {}).get("kind")
        verified = 0
        for f in case.files:
            try:
                data = stack.desk.blobs.get(f.sha256)
            except BlobError:
                continue
            verified += hashlib.sha256(data).hexdigest() == f.sha256
        return (str(decision) if decision else None), verified, len(case.files)


def scan_logs(paths: list[Path], card: Any) -> list[str]:
    """Lines of the logs that carry the card holder's name or full ID number."""
    needles = [str(card.fields.get("name", "")), str(card.fields.get("id_number", ""))]
    needles = [n for n in needles if n]
    hits = []
    for path in paths:
        if not path.exists():
            continue
        for number, line in enumerate(path.read_text("utf-8", "replace").splitlines(), 1):
            decoded = line
            with contextlib.suppress(ValueError):  # JSON escapes would hide the text
                decoded = json.dumps(json.loads(line), ensure_ascii=False)
            if any(n in decoded or n in line for n in needles):
                hits.append(f"{path.name}:{number}")
    return hits


async def _auto(test_hosts: bool, artifacts: Path | None, folder: Path | None
                ) -> dict[str, Any]:
    async with run_stack(test_hosts=test_hosts, folder=folder) as stack:
        result = await _case(stack, artifacts)
        logs = list(stack.log_files)
        card = stack.card
    result["logs"] = [str(p) for p in logs]
    leaks = scan_logs(logs, card)
    result["personal_data_in_logs"] = leaks
    result["ok"] = bool(result["ok"] and not leaks)
    return result


async def _interactive(seconds: float | None, signals: StopSignal) -> None:
    """The stack until Ctrl-C, SIGTERM or ``seconds``; then everything is stopped (open
    picture streams and clerk sockets are closed, not waited for) and the folder removed."""
    async with run_stack(test_hosts=False, ports=(8765, 8443, 8700)) as stack:
        click.echo("tongban demo: hub, desk and one kiosk on this machine; every device is "
                   "SIMULATED")
        click.echo(f"  kiosk touch screen  {stack.kiosk_url}/")
        click.echo(f"  clerk desk          {stack.desk_url}/   (user {DEMO_CLERK}, password "
                   f"{stack.password})")
        click.echo(f"  hub                 {stack.hub_url}/healthz")
        click.echo("On the kiosk: 开始办理, choose 永嘉县 and a matter, press "
                   "演示：放入示例身份证; the simulated face follows the prompts; pages "
                   "arrive under the simulated document camera. At the desk: log in, accept, "
                   "decide. Ctrl-C stops.")
        click.echo(f"  logs                {stack.log_files[0]}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signals.stop.wait(), seconds)


@click.command()
@click.option("--auto", is_flag=True, help="Play one whole case headless (kiosk bot and a "
                                           "clerk bot in Chromium) and report it.")
@click.option("--json", "as_json", is_flag=True, help="With --auto: print one JSON object.")
@click.option("--test-hosts", is_flag=True, help="With --auto (root): the clerk's browser on "
                                                 "a test host in its own network namespace.")
@click.option("--cards", is_flag=True, help="Only read every sample card with the simulated "
                                            "reader (the quickest look at the driver).")
@click.option("--seconds", type=float, default=None, help="Stop the interactive demo after "
                                                          "this many seconds.")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --auto: save screenshots of the clerk's call and the kiosk's "
                   "receipt here.")
@click.option("--scenario", default="case", show_default=True, metavar="NAME",
              help="With --auto: the situation to play: case (one whole case, the clerk in "
                   "Chromium), busy, pick, decline, lapse, transfer, cancel, closed, "
                   "two-clerks (clerks as the headless stand-in).")
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the demo's state (database, spool, logs) here instead of a "
                   "temporary folder.")
def demo(auto: bool, as_json: bool, test_hosts: bool, cards: bool, seconds: float | None,
         artifacts: Path | None, folder: Path | None, scenario: str) -> None:
    """Run the hub, a desk and one kiosk on this machine with every device SIMULATED.

    \b
      tongban demo                      open the two printed URLs: kiosk and clerk desk
      tongban demo --auto --json        one whole case, headless, reported as JSON
      sudo tongban demo --auto --test-hosts --json   (the clerk's browser in a namespace)
      tongban demo --auto --scenario busy --json    one situation of the day (see below)
      tongban demo --cards --json       read every sample card through the virtual reader

    \b
    Scenarios (--scenario, each on its own fresh hub, desk and kiosks):
      case        one whole case, the clerk in Chromium (the default)
      busy        one clerk, two citizens: the second told position 1 and a wait
      pick        a pick-routing centre: the clerk chooses the citizen from the list
      decline     an offer declined: back to the front, served by the next clerk
      lapse       an offer left to lapse: the same
      transfer    sent to another centre's clerk: the case follows, decided there
      cancel      the citizen gives up while waiting: gone from every list at once
      closed      outside working hours: the next opening, in words
      two-clerks  two decisions at once; two clerks on one case (SQLite and PostgreSQL)
    A scenario prints ok, its checks, and what each citizen's screen and each clerk's
    queue showed, step by step.

    The card is fictional, its photo and the live face are scikit-image's public-domain
    astronaut (labelled simulated wherever verification shows), the document camera is
    synthetic. --auto prints: ok, case_id, decision, call_setup_ms (clerk's accept to the first
    decoded frame at the clerk), video_frames, audio (received levels, 0-1), files_verified,
    kiosk_residue (personal files left on the kiosk: must be empty), steps_ms, and the logs
    it wrote with any personal data found in them.
    """
    if cards:
        _cards_demo(as_json)
        return
    if (as_json or test_hosts or artifacts or scenario != "case") and not auto:
        raise click.UsageError("--json, --test-hosts, --artifacts and --scenario go with "
                               "--auto")
    from tongban.scenarios import SCENARIOS

    if scenario != "case" and scenario not in SCENARIOS:
        raise click.UsageError(f"no scenario {scenario!r} (choose case, "
                               f"{', '.join(SCENARIOS)})")
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    if not auto:
        run_service("demo", lambda signals: _interactive(seconds, signals))
        return
    if scenario != "case":
        _scenario(scenario, test_hosts, folder, as_json)
        return
    result = run_interruptible("demo", _auto(test_hosts, artifacts, folder))
    if as_json:
        emit(result, as_json=True)
    else:
        click.echo(f"case {result.get('case_id')}: {result.get('decision')}, call set-up "
                   f"{result.get('call_setup_ms')} ms, video {result.get('video_frames')}, "
                   f"files verified {result.get('files_verified')}, residue "
                   f"{result.get('kiosk_residue')}, ok={result['ok']}")
    if not result["ok"]:
        raise SystemExit(1)



def _scenario(name: str, test_hosts: bool, folder: Path | None, as_json: bool) -> None:
    from tongban import netns
    from tongban.scenarios import play_all_databases

    if test_hosts and (reason := netns.available()) is not None:
        raise DemoError(f"--test-hosts: {reason}")
    result = run_interruptible("demo", play_all_databases(name, test_hosts=test_hosts,
                                                          folder=folder))
    if as_json:
        emit(result, as_json=True)
    else:
        for run in result.get("runs", [result]):
            where = f" on {run['database']}" if run.get("database") else ""
            if run.get("skipped"):
                click.echo(f"{name}{where}: skipped: {run['skipped']}")
                continue
            click.echo(f"{name}{where}: ok={run['ok']}")
            for check, holds in run["checks"].items():
                click.echo(f"  {'ok  ' if holds else 'FAIL'} {check}")
            for who, steps in run["citizens"].items():
                shown = " → ".join(_step_words(s) for s in steps)
                click.echo(f"  {who}: {shown}")
            if run.get("error"):
                click.echo(f"  error: {run['error']}")
    if not result["ok"]:
        raise SystemExit(1)


def _step_words(step: dict[str, Any]) -> str:
    words = "，".join(str(step[k]) for k in ("note", "position_words", "detail")
                     if step.get(k))
    wait = step.get("wait_words") or ""
    return str(step["state"]) + (f"（{words}{'，' + wait if wait else ''}）" if words else "")
