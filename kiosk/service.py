"""The kiosk service: the citizen's session wired to the devices, person-ID verification, the
hub, the call and the desk.

The session (``kiosk.session``) decides; this service carries out what it returns: it starts
the card watcher, the face check and the document capture on worker threads, joins the queue,
runs the aiortc peer when a clerk accepts, builds and signs the case package, spools it
encrypted and delivers it, performs the clerk's allowed commands, and wipes. Every session
mutation happens under one lock, from touches, devices and the hub alike.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import secrets
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devices.camera import Camera, CameraError
from devices.facecam import FaceCamera, SimulatedFaceSource
from devices.idcard.reader import IdCardReader
from devices.idcard.watcher import (
    CardInserted,
    CardRemoved,
    CardWatcher,
    DeviceLost,
    DeviceRestored,
    ReaderFault,
)
from devices.scanner.camera import DocumentCamera
from devices.scanner.material import compose_card_pair, encode_jpeg
from devices.scanner.pipeline import CaptureTimeout, PageScanner
from kiosk import events as ev
from kiosk.call import CallPeer
from kiosk.catalogue import Catalogue, Material
from kiosk.config import KioskConfig
from kiosk.media import CameraTrack, microphone_track
from kiosk.package import CapturedFile, build_package, identity_document
from kiosk.session import (
    FACE_FAILED,
    FACE_TO_CLERK,
    Action,
    Session,
    State,
    TransitionError,
)
from kiosk.spool import DeliveryRefused, Spool, deliver
from kiosk.web import TouchScreen
from signaling import protocol as p
from signaling.client import Disconnected, HubClient
from tongban import serving

log = structlog.get_logger("kiosk.service")

COMMANDS = frozenset({"rescan", "capture_full", "end", "receipt"})
"""What a clerk may ask of the kiosk; anything else is refused and logged."""


@dataclass
class Devices:
    """The kiosk's devices (real, or the simulators in the demo)."""

    reader: IdCardReader
    face: FaceCamera
    document: DocumentCamera


@dataclass
class CallReport:
    """What the last call measured (for the demo's report and the bench)."""

    calls: int = 0
    restarts: int = 0
    video_frames: int = 0
    audio_frames: int = 0
    audio_level: float = 0.0
    upload: str | None = None
    files_sent: int = 0
    refused_commands: list[str] = field(default_factory=list)
    case_ids: list[str] = field(default_factory=list)


class KioskService:
    """One kiosk: run it with ``start()`` and ``stop()``."""

    def __init__(self, config: KioskConfig, catalogue: Catalogue, key: Ed25519PrivateKey,
                 devices: Devices, *, engine: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.kconf = config.kiosk
        self.catalogue = catalogue
        self.key = key
        self.devices = devices
        self.clock = clock
        self.simulated = self.kconf.simulated or devices.face.simulated
        self._engine = engine
        self.lock = asyncio.Lock()
        self.session = Session(catalogue, now=clock(), last_touch=clock(),
                               face_attempts=config.face.attempts)
        self.screen = TouchScreen(self.session, self.kconf.work_dir / "speech",
                                  on_actions=self._carry_out, lock=self.lock)
        self.screen.videos.update(face=lambda: self._camera_jpeg("face"),
                                  document=lambda: self._camera_jpeg("document"),
                                  page=self._page_preview, clerk=self._clerk_jpeg)
        self.spool = Spool(self.kconf.spool_dir)
        self.hub: HubClient | None = None
        self.peer: CallPeer | None = None
        self.report = CallReport()
        self._files: list[CapturedFile] = []
        self._card_photo: np.ndarray | None = None
        self._attempt_stills: list[bytes] = []
        """The best still of each failed face check (they go to the clerk at the limit)."""
        self._case_id: str | None = None
        self._ticket_id: str | None = None
        self._rerequests = 0
        self._shown_state = State.IDLE
        self._copies = 0
        self._abandoned: collections.deque[str] = collections.deque(maxlen=16)
        """Cases wiped before the hub confirmed their ticket (cancelled when it arrives)."""
        self._uploaded: tuple[str, str] | None = None
        """(case id, centre) of the package delivered last (a transfer sends it again)."""
        self._supplements = 0
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._jpeg_cache: dict[str, tuple[int, bytes]] = {}
        self.delivered: list[str] = []
        self.shown: collections.deque[tuple[float, dict[str, Any]]] = collections.deque(
            maxlen=500)
        """Every distinct screen the session produced, with the clock's time, for the demo's
        reports: states, positions, waits, notes, case numbers; no card field, and no
        receipt text (a clerk's reason may name someone)."""
        self._runner: Any = None
        self.screen_url: str | None = None
        self._label_simulated()

    # -- life cycle -----------------------------------------------------------------------

    async def start(self, *, serve_screen: bool = True) -> None:
        from aiohttp import web

        wiped = self.spool.wipe_all()
        self._wipe_work_dir()
        if wiped:
            log.warning("kiosk.spool_wiped_at_start", packages=wiped)
        # a camera that is not there yet is waited for; the step that needs it shows the fault
        for camera in (self.devices.face, self.devices.document):
            await asyncio.to_thread(camera.start, keep_trying=True)
        if self.kconf.hub_url:
            self.hub = HubClient(self.kconf.hub_url, self.kconf.kiosk_id, p.ClientKind.KIOSK,
                                 self.key, keep_queues=False)
            self.hub.listener = self._from_hub
            try:
                await self.hub.connect(timeout=10)
            except Exception as exc:  # the kiosk still serves its screen; the session says
                log.warning("kiosk.hub_unreachable_at_start", error=type(exc).__name__)
                self.hub.redial()
        if serve_screen:
            self._runner = serving.runner(self.screen.app)  # never waits on picture streams
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.kconf.screen_host, self.kconf.screen_port)
            await site.start()
            port = self._runner.addresses[0][1]
            self.screen_url = f"http://{self.kconf.screen_host}:{port}/"
        self._spawn(self._ticker())

    async def stop(self) -> None:
        async with self.lock:
            await self._wipe()
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(BaseException):
                await task
        if undelivered := self.spool.pending():  # a delivery cut short by the stop
            log.warning("kiosk.stopped_with_undelivered_packages", packages=len(undelivered))
        if self.hub is not None:
            with contextlib.suppress(Exception):
                await self.hub.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await asyncio.to_thread(self.devices.face.stop)
        await asyncio.to_thread(self.devices.document.stop)
        with contextlib.suppress(Exception):
            await self.devices.reader.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._done)
        if name is not None:
            old = self._tasks.get(name)
            if old is not None and not old.done():
                old.cancel()
            self._tasks[name] = task
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            # where it failed, never the message (it could quote a card field)
            frames = traceback.extract_tb(exc.__traceback__) if exc is not None else []
            where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
            log.error("kiosk.task_failed", error=type(exc).__name__, where=where)

    def _stop_task(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None and not task.done():
            task.cancel()

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from kiosk.identity.engine import default_engine

            self._engine = default_engine()
        return self._engine

    # -- events into the session ---------------------------------------------------------

    async def event(self, event: ev.SessionEvent) -> bool:
        """Feed the session one event (from a device, the hub or the desk); False if the
        current state does not take it."""
        async with self.lock:
            try:
                actions = self.session.handle(event, self.clock())
            except TransitionError as exc:
                log.info("kiosk.event_ignored", name=event.name,
                         state=self.session.state.value, why=str(exc))
                return False
            await self._carry_out(actions)
            return True

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            async with self.lock:
                actions = self.session.tick(self.clock())
                await self._carry_out(actions)
            if self.peer is not None and self.peer.broken():
                await self._restart_call()

    # -- actions --------------------------------------------------------------------------

    async def _carry_out(self, actions: list[Action]) -> None:
        """Called under the lock; long work goes to tasks."""
        screen = self.session.screen()
        if "receipt" in screen:  # the clerk's free text stays out of the history
            screen["receipt"] = {k: screen["receipt"].get(k) for k in ("case_number", "kind")}
        if not self.shown or self.shown[-1][1] != screen:
            self.shown.append((self.clock(), screen))
        if self.session.state is not self._shown_state:
            # a new screen: the last step's notes do not belong on it
            self._shown_state = self.session.state
            for key in ("hint", "gate", "call_note", "speak"):
                self.screen.extras.pop(key, None)
        for action in actions:
            log.info("kiosk.action", action=action.value, state=self.session.state.value)
            if action is Action.WIPE:
                await self._wipe()
            elif action is Action.START_CARD_READER:
                self._stop_task("face")
                self._spawn(self._watch_card(), "card")
            elif action is Action.START_FACE_CHECK:
                self._spawn(self._check_face(), "face")
            elif action is Action.START_CAPTURE:
                self._stop_task("face")
                self._stop_task("card")
                self._spawn(self._capture_material(), "capture")
            elif action is Action.SEND_TICKET:
                self._stop_task("capture")
                self._spawn(self._send_ticket(), "ticket")
            elif action is Action.CANCEL_TICKET:
                # the session has already forgotten the ticket when it wipes: ours is kept
                self._spawn(self._cancel_ticket(self._ticket_id))
            elif action is Action.START_CALL:
                call = self.session.context.call
                if call is not None:
                    self._spawn(self._start_call(call), "call")
            elif action is Action.UPLOAD_PACKAGE:
                self._upload_case()
            elif action is Action.END_CALL:
                self._stop_task("call")
                await self._close_peer()
            elif action is Action.SHOW_RECEIPT:
                self.screen.extras.pop("hint", None)
            elif action is Action.FOLLOW_TRANSFER and self._uploaded is not None:
                self._upload_case()  # the case goes where the citizen was sent

    # -- the ID card ----------------------------------------------------------------------

    async def _watch_card(self) -> None:
        """Watch the reader while a card is wanted or being compared."""
        self.screen.extras["hint"] = "身份证放好后请不要移动"
        try:
            await self._card_events()
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:  # a driver failure must not leave the citizen at a frozen step
            log.error("kiosk.reader_failed", error=type(exc).__name__)
            with contextlib.suppress(Exception):
                await self.devices.reader.close()
            await self.event(ev.DeviceFault(device="idcard"))

    async def _card_events(self) -> None:
        async for event in CardWatcher(self.devices.reader).events():
            if isinstance(event, CardInserted) and self.session.state is State.READ_CARD:
                read = event.read
                photo = read.decoded_photo
                self._card_photo = None if photo is None else photo.bgr
                card = read.card.model_dump(mode="json")
                card["photo"] = read.photo.model_dump(mode="json")
                await self.event(ev.CardRead(card=card))
            elif isinstance(event, CardRemoved):
                await self.event(ev.CardRemoved())
            elif isinstance(event, DeviceLost):
                await self.event(ev.DeviceFault(device="idcard"))
                return
            elif isinstance(event, ReaderFault):
                self.screen.extras["hint"] = "读卡没有成功，请把身份证重新放一次"
            elif isinstance(event, DeviceRestored):
                self.screen.extras.pop("hint", None)
            if self.session.state not in (State.READ_CARD, State.VERIFY_FACE):
                return

    # -- the face -------------------------------------------------------------------------

    async def _check_face(self) -> None:
        """Liveness challenge, then the comparison with the card photo (on a thread). The
        screen hears pass, fail or "to the clerk", never a score: the record with the score
        and the evidence stills goes into the case package for the desk."""
        from kiosk.identity.record import build_record
        from kiosk.identity.verify import CardPhotoError

        if self._card_photo is None:
            self.screen.extras["hint"] = "证件照片无法读取，请联系工作人员"
            await self.event(ev.FaceResult(decision="no_face", liveness=False))
            return
        cancel = threading.Event()  # set when this task ends, however it ends
        try:
            outcome = await asyncio.to_thread(self._face_blocking, self._card_photo, cancel)
        except CameraError:
            await self.event(ev.DeviceFault(device="face_camera"))
            return
        except CardPhotoError:  # the chip's photo has no face dlib can find
            self.screen.extras["hint"] = "证件照片无法读取，请联系工作人员"
            await self.event(ev.FaceResult(decision="no_face", liveness=False))
            return
        finally:
            cancel.set()
        if outcome is None:
            return
        result, liveness, signs = outcome
        face = self.config.face
        record = await asyncio.to_thread(
            build_record, result, self._card_photo, self.engine.versions, liveness,
            simulated=self.simulated, step_timeout=face.liveness.step_timeout,
            replay_signs=signs, attempt=self.session.context.face_failures + 1,
            earlier=list(self._attempt_stills))
        passed = bool(liveness and liveness.passed) and result.decision.value in (
            "match", "review")
        if not passed:
            still = record.evidence_jpegs.get("live_still.jpg") or \
                record.evidence_jpegs.get("liveness_start.jpg", b"")
            self._attempt_stills.append(still)
        self._files = [f for f in self._files if f.material is not None]
        files = {"card_photo.jpg": record.card_photo_jpeg, **record.evidence_jpegs}
        self._files.extend(CapturedFile(name, data) for name, data in files.items() if data)
        accepted = await self.event(ev.FaceResult(
            decision=result.decision.value, liveness=bool(liveness and liveness.passed),
            record=record.to_json(), challenge_id=liveness.challenge_id if liveness else ""))
        if not accepted:
            return
        told = self.session.context.face
        left = self.session.face_attempts - self.session.context.face_failures
        self.screen.extras["hint"] = {
            "pass": "核验通过", "clerk": FACE_TO_CLERK,
        }.get(told or "", f"{FACE_FAILED}（还可以试 {left} 次）")

    def _face_blocking(self, card_photo: np.ndarray, cancel: threading.Event
                       ) -> tuple[Any, Any, list[str]] | None:
        from kiosk.identity.liveness import LivenessChallenge
        from kiosk.identity.replay import assess_replay
        from kiosk.identity.verify import Verifier

        face = self.config.face
        camera = self.devices.face
        sim = camera.source if isinstance(camera.source, SimulatedFaceSource) else None
        verifier = Verifier(self.engine, face)
        card = verifier.prepare_card(card_photo)  # before the prompts: they need the engine
        challenge = LivenessChallenge(self.engine, face.liveness, simulated=camera.simulated)
        status = challenge.status()
        seq, started = 0, None
        while not status.done:
            if cancel.is_set():
                return None
            if sim is not None:
                sim.step = status.step.value if status.step else None
            frame = camera.latest(seq)
            seq = frame.seq
            started = frame.t if started is None else started
            status = challenge.feed(frame.image, frame.t - started)
            if status.prompt_zh and status.step is not None:
                self.screen.extras["hint"] = status.prompt_zh + (
                    "（模拟人脸）" if camera.simulated else "")
                self.screen.extras["speak"] = f"liveness_{status.step.value}"
        if sim is not None:
            sim.step = None
        self.screen.extras.pop("speak", None)
        self.screen.extras["hint"] = "请正对摄像头，正在比对"
        liveness = status.result
        kept = liveness.frontal if liveness is not None else []

        def frames() -> Any:
            nonlocal seq
            yield from kept  # the liveness step's sharpest frontal frames
            for _ in range(face.frames):
                if cancel.is_set():
                    return
                frame = camera.latest(seq)
                seq = frame.seq
                yield frame.image, frame.t - (started or frame.t)

        result = verifier.verify(card, frames(), limit=len(kept) + face.frames)
        signs: set[str] = set()
        for index in result.fused:
            box = result.frames[index].box
            if box is not None:
                signs.update(s.value for s in assess_replay(result.stills[
                    result.fused.index(index)], box).signs)
        return result, liveness, sorted(signs)

    # -- the materials ------------------------------------------------------------------

    def _current_material(self) -> Material | None:
        ctx = self.session.context
        if self.session.state is not State.CAPTURE or not ctx.materials:
            return None
        return ctx.materials[ctx.index]

    async def _capture_material(self) -> None:
        """Capture pages of the current material until the citizen moves on."""
        material = self._current_material()
        if material is None:
            return
        if not self.session.context.captured.get(material.code):
            # a retake (or a first go): no page of this material is kept from before
            self._files = [f for f in self._files if f.material != material.code]
            self._jpeg_cache.pop("page", None)
        cancel = threading.Event()  # set when this task ends, however it ends
        scanner = PageScanner(self.devices.document, self.config.scanner)
        pending_front: np.ndarray | None = None
        self.screen.extras["hint"] = f"请放上：{material.name}" + (
            "（正面）" if material.card else "")
        try:
            while self._current_material() == material:
                try:
                    image = await asyncio.to_thread(self._one_page, scanner, cancel)
                except CaptureTimeout:
                    continue
                if image is None:
                    return
                if material.card and pending_front is None:
                    pending_front = image
                    self.screen.extras["hint"] = f"正面已拍好，请翻到背面：{material.name}"
                    continue
                if material.card and pending_front is not None:
                    image = await asyncio.to_thread(compose_card_pair, pending_front, image)
                    pending_front = None
                jpeg, preview = await asyncio.to_thread(self._page_jpegs, image)
                count = sum(1 for f in self._files if f.material == material.code) + 1
                self._files.append(CapturedFile(f"{material.code}-{count}.jpg", jpeg,
                                                "image/jpeg", material.code))
                self._jpeg_cache["page"] = (count, preview)
                self.screen.extras["hint"] = (f"已拍好第 {count} 页。还有下一页请放上，"
                                              "没有了请点“这份拍好了”")
                await self.event(ev.Captured(material=material.code))
        except CameraError:
            await self.event(ev.DeviceFault(device="document_camera"))
        finally:
            cancel.set()

    def _page_jpegs(self, image: np.ndarray) -> tuple[bytes, bytes]:
        """The page for the case, and a small preview for the citizen to check it."""
        h, w = image.shape[:2]
        scale = 480 / max(h, w)
        small = cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))),
                           interpolation=cv2.INTER_AREA)
        return encode_jpeg(image, self.config.scanner.jpeg_quality), encode_jpeg(small, 80)

    def _one_page(self, scanner: PageScanner, cancel: threading.Event) -> np.ndarray | None:
        deadline = time.monotonic() + 2.0

        def show(detection: Any, decision: Any) -> None:
            del detection
            message = decision.report.message("zh") if decision.report else None
            if message:
                self.screen.extras["gate"] = message

        while time.monotonic() < deadline:
            if cancel.is_set():
                return None
            try:
                page = scanner.wait_for_page(0.5, on_step=show)
            except CaptureTimeout:
                continue
            self.screen.extras.pop("gate", None)
            return page.image
        raise CaptureTimeout("no page yet")

    # -- the queue ------------------------------------------------------------------------

    async def _send_ticket(self, delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
        ctx = self.session.context
        if self._case_id is None:
            self._case_id = secrets.token_urlsafe(12)
            self.report.case_ids.append(self._case_id)
        if self.hub is None or not self.hub.connected:
            await self.event(ev.HubUnreachable())
            return
        assert ctx.centre is not None and ctx.matter is not None
        await self.hub.send("ticket.request", p.TicketRequest(
            centre=ctx.centre, matter=ctx.matter, case_id=self._case_id))

    async def _cancel_ticket(self, ticket_id: str | None) -> None:
        if self.hub is not None and self.hub.connected and ticket_id:
            with contextlib.suppress(Exception):
                await self.hub.send("ticket.cancel", p.TicketCancel(ticket_id=ticket_id))

    # -- the hub's events -----------------------------------------------------------------

    async def _from_hub(self, event: str, message: p.Message) -> None:
        """Every hub event, already parsed with its protocol model by the hub client."""
        del event
        call = self.session.context.call
        if isinstance(message, p.Welcome):
            await self._on_welcome(message)
        elif isinstance(message, p.TicketUpdate):
            await self._on_ticket(message)
        elif isinstance(message, p.ServiceClosed):
            await self._on_closed(message)
        elif isinstance(message, p.CallAnswer):
            peer = self.peer
            if peer is not None and message.call_id == peer.call_id:
                await peer.answer(message.sdp)
        elif isinstance(message, p.CallIce):
            peer = self.peer
            if peer is not None and message.call_id == peer.call_id:
                await peer.add_candidate(message.candidate, message.sdp_mid,
                                         message.sdp_mline_index)
        elif isinstance(message, p.CallCommand):
            await self._on_command(message)
        elif isinstance(message, p.CallPeerLost):
            self.screen.extras["call_note"] = "工作人员的网络中断了，正在等待重新连接"
        elif isinstance(message, p.CallPeerBack):
            self.screen.extras.pop("call_note", None)
        elif isinstance(message, p.HubError):
            log.warning("kiosk.hub_refused", code=message.code, what=message.event)
        elif isinstance(message, Disconnected):
            await self.event(ev.HubUnreachable())
        else:  # call.start, call.ended
            event_ = ev.from_hub(message, case_id=self._case_id,
                                 call_id=call.call_id if call else None)
            if event_ is not None:
                await self.event(event_)

    async def _on_welcome(self, welcome: p.Welcome) -> None:
        if self.session.state is State.HUB_UNREACHABLE:
            await self.event(ev.HubBack())
        tickets = {t.case_id for t in welcome.tickets}
        state = self.session.state
        if state in (State.WAITING, State.IN_CALL) and self._case_id not in tickets:
            # the hub lost the ticket (it restarted without a shared store): ask again
            self.session.context.ticket = None
            self._spawn(self._send_ticket(), "ticket")
        for ticket in welcome.tickets:  # where the queue has moved while we were away
            if ticket.case_id == self._case_id:
                await self._on_ticket(ticket)
        for start in welcome.calls:
            if start.case_id == self._case_id and (
                    self.peer is None or self.peer.call_id != start.call_id):
                await self.event(ev.CallStarted(call=start))

    async def _on_ticket(self, ticket: p.TicketUpdate) -> None:
        if ticket.case_id in self._abandoned:
            if ticket.state is not p.TicketState.CLOSED:  # the citizen left before it came
                self._spawn(self._cancel_ticket(ticket.ticket_id))
            else:
                self._abandoned.remove(ticket.case_id)
            return
        event = ev.from_hub(ticket, case_id=self._case_id, call_id=None)
        if event is None:
            return
        self._ticket_id = ticket.ticket_id
        if ticket.state is not p.TicketState.CLOSED:
            self._rerequests = 0
        await self.event(event)

    async def _on_closed(self, closed: p.ServiceClosed) -> None:
        if self.session.state is State.WAITING and self._rerequests < 10:
            # asking again after the hub lost our ticket, before the desks have told the new
            # hub who is signed in: ask once more shortly, the citizen keeps their place
            self._rerequests += 1
            self._spawn(self._send_ticket(delay=3.0), "ticket")
            return
        event = ev.from_hub(closed, case_id=self._case_id, call_id=None)
        if event is not None:
            await self.event(event)

    # -- the call -------------------------------------------------------------------------

    def _tracks(self) -> list[Any]:
        return [CameraTrack(self.devices.face, fps=15, size=(640, 480)),
                CameraTrack(self.devices.document, fps=10, size=(960, 720)),
                microphone_track(self.kconf.microphone, self.kconf.microphone_format,
                                 simulated=self.simulated)]

    async def _start_call(self, call: p.CallStart) -> None:
        if self.hub is None:
            return
        await self._close_peer()
        self.peer = peer = CallPeer(call, self._tracks(),
                                    restart_after_s=self.kconf.restart_after_s,
                                    speaker=self.kconf.speaker, clock=self.clock)
        self.report.calls += 1
        self.screen.extras.pop("call_note", None)
        sdp = await peer.offer()
        if self.peer is not peer:
            return
        await self.hub.send("call.offer", p.CallOffer(call_id=peer.call_id, sdp=sdp))
        log.info("kiosk.call_offered", call=peer.call_id)

    async def _restart_call(self) -> None:
        peer = self.peer
        if peer is None or self.hub is None or not self.hub.connected:
            return
        log.warning("kiosk.call_broken", call=peer.call_id, failed=peer.failed)
        self.report.restarts += 1
        self._collect(peer)
        peer.restart_requested = True  # one restart per call
        await self.hub.send("call.restart", p.CallRestart(call_id=peer.call_id))

    def _collect(self, peer: CallPeer) -> None:
        self.report.video_frames += peer.incoming.video_frames
        self.report.audio_frames += peer.incoming.audio_frames
        self.report.audio_level = max(self.report.audio_level, peer.incoming.audio_level)
        peer.incoming.video_frames = peer.incoming.audio_frames = 0

    async def _close_peer(self) -> None:
        peer, self.peer = self.peer, None
        if peer is not None:
            self._collect(peer)
            await peer.close()

    async def _on_command(self, command: p.CallCommand) -> None:
        name, args = command.name, command.args
        peer = self.peer
        in_call = peer is not None and command.call_id == peer.call_id
        if name not in COMMANDS or not in_call:
            log.warning("kiosk.command_refused", name=name[:32], in_call=in_call)
            self.report.refused_commands.append(name[:32])
            return
        log.info("kiosk.command", name=name)
        if name == "receipt":
            try:
                receipt = ev.Receipt(**{k: str(args.get(k, ""))
                                        for k in ("case_number", "kind", "text")})
            except ValueError:
                log.warning("kiosk.command_refused", name=name, why="invalid receipt")
                self.report.refused_commands.append(name)
                return
            if await self.event(ev.ReceiptGiven(receipt=receipt)):
                await self._end_call_completed(command.call_id)
        elif name == "end":
            receipt = ev.Receipt(kind="ended", text="工作人员已结束本次通话")
            if await self.event(ev.ReceiptGiven(receipt=receipt)):
                await self._end_call_completed(command.call_id)
        elif name == "rescan":
            self._spawn(self._supplement(str(args.get("material", ""))[:64], full=False))
        elif name == "capture_full":
            self._spawn(self._supplement(None, full=True))

    async def _end_call_completed(self, call_id: str) -> None:
        if self.hub is not None and self.hub.connected:
            with contextlib.suppress(Exception):
                await self.hub.send("call.end", p.CallEnd(call_id=call_id, reason="completed"))

    async def _supplement(self, material: str | None, *, full: bool) -> None:
        """The clerk's re-scan of one material, or a full-resolution capture of what lies
        under the document camera now: captured, signed and uploaded as a supplement."""
        names = {m.code: m.name for m in self.session.context.materials}
        if material is not None and material not in names:
            log.warning("kiosk.command_refused", name="rescan", why="unknown material")
            return
        label = names.get(material or "", "材料")
        self.screen.extras["call_note"] = (f"工作人员请您重新放好：{label}" if not full
                                           else "正在拍摄高清图像，请不要移动材料")
        scanner = PageScanner(self.devices.document, self.config.scanner)
        cancel = threading.Event()
        try:
            if full:
                image = await asyncio.to_thread(self._still_now, scanner)
            else:
                image = None
                deadline = self.clock() + 60
                while image is None and self.clock() < deadline:
                    with contextlib.suppress(CaptureTimeout):
                        image = await asyncio.to_thread(self._one_page, scanner, cancel)
        except CameraError:
            self.screen.extras["call_note"] = "高拍仪故障，请告诉工作人员"
            return
        finally:
            cancel.set()
        if image is None or self._case_id is None:
            self.screen.extras["call_note"] = "没有拍到，请告诉工作人员"
            return
        self._supplements += 1
        n = self._supplements
        name = f"{material or 'full'}-r{n}.jpg"
        jpeg = await asyncio.to_thread(encode_jpeg, image, self.config.scanner.jpeg_quality)
        self.screen.extras["call_note"] = "已拍好，正在发送给工作人员"
        await self._spool_and_deliver([CapturedFile(name, jpeg, "image/jpeg",
                                                    material or "full_resolution")], n)
        self.screen.extras.pop("call_note", None)

    def _still_now(self, scanner: PageScanner) -> np.ndarray:
        preview, detection, _ = scanner.step()
        return scanner.capture(preview, detection).image

    # -- the package ----------------------------------------------------------------------

    def _upload_case(self) -> None:
        ctx = self.session.context
        if self._case_id is None or ctx.centre is None or \
                self._uploaded == (self._case_id, ctx.centre):
            return
        self._uploaded = (self._case_id, ctx.centre)
        identity = identity_document(ctx.card, ctx.verification, agent=ctx.by_proxy,
                                     simulated=self.simulated)
        files = [CapturedFile("identity.json", identity, "application/json"), *self._files]
        self._copies += 1
        self._spawn(self._spool_and_deliver(files, 0, copy=self._copies - 1))

    async def _spool_and_deliver(self, files: list[CapturedFile], supplement: int,
                                 copy: int = 0) -> None:
        ctx = self.session.context
        case_id = self._case_id
        if case_id is None or ctx.centre is None or ctx.matter is None:
            return
        url = self.kconf.desk_for(ctx.centre)
        if url is None:
            log.error("kiosk.no_desk", centre=ctx.centre)
            return
        package = build_package(case_id=case_id, kiosk_id=self.kconf.kiosk_id,
                                centre=ctx.centre, matter=ctx.matter, files=files,
                                key=self.key, simulated=self.simulated, supplement=supplement,
                                copy=copy)
        await asyncio.to_thread(self.spool.put, package)
        if supplement == 0:
            self.report.upload = "spooled"
        ssl: Any = True
        if self.kconf.ca_file is not None:
            import ssl as ssl_module

            ssl = ssl_module.create_default_context(cafile=str(self.kconf.ca_file))
        try:
            status = await deliver(self.spool, package.case_id, url, self.kconf.kiosk_id,
                                   attempts=12, ssl=ssl)
        except DeliveryRefused as exc:
            log.error("kiosk.package_refused", status=exc.status, code=exc.code)
            self.spool.remove(package.case_id)
            status = f"refused:{exc.code}"
        except TimeoutError:
            log.error("kiosk.package_undelivered", package=package.case_id)
            status = "undelivered"  # stays spooled (encrypted) until the kiosk restarts
        self.delivered.append(f"{package.case_id}:{status}")
        self.report.files_sent += len(files) if status in ("stored", "already") else 0
        if supplement == 0:
            self.report.upload = status

    # -- the wipe -------------------------------------------------------------------------

    async def _wipe(self) -> None:
        """Forget the session: tasks, call, card, photos, pages, screen notes, work files,
        what the hub client last heard. Undelivered packages stay encrypted in the spool until
        the desk has them."""
        if self._case_id is not None and self._ticket_id is None:
            # asked for a ticket the hub has not confirmed yet: cancel it when it shows up
            self._abandoned.append(self._case_id)
        if self.hub is not None:
            self.hub.forget()  # a receipt's text, a clerk's command: not kept
        for name in list(self._tasks):
            self._stop_task(name)
        await self._close_peer()
        self._files = []
        self._card_photo = None
        self._attempt_stills = []
        self._case_id = None
        self._ticket_id = None
        self._rerequests = 0
        self._uploaded = None
        self._copies = 0
        self._supplements = 0
        self._jpeg_cache.clear()
        self.screen.extras.clear()
        self._label_simulated()
        self._wipe_work_dir()
        log.info("kiosk.wiped")

    def _label_simulated(self) -> None:
        if self.simulated:
            self.screen.extras["simulated"] = True

    def _wipe_work_dir(self) -> None:
        work = self.kconf.work_dir
        work.mkdir(parents=True, exist_ok=True)
        for path in work.iterdir():
            if path.name == "speech":
                continue  # spoken prompts: nothing personal
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def residue(self) -> list[str]:
        """Personal files left on this kiosk: the spool and the work folder (speech aside)."""
        out = [str(p) for p in self.kconf.spool_dir.glob("*") if p.is_file()]
        out += [str(p) for p in self.kconf.work_dir.rglob("*")
                if p.is_file() and "speech" not in p.relative_to(self.kconf.work_dir).parts]
        return sorted(out)

    # -- live pictures --------------------------------------------------------------------

    def _camera_jpeg(self, which: str) -> bytes | None:
        state = self.session.state
        wanted = {"face": (State.VERIFY_FACE,), "document": (State.CAPTURE, State.IN_CALL)}
        if state not in wanted[which]:
            return None
        camera: Camera = self.devices.face if which == "face" else self.devices.document
        frame = camera.peek()
        if frame is None:
            return None
        cached = self._jpeg_cache.get(which)
        if cached is not None and cached[0] == frame.seq:
            return cached[1]
        small = cv2.resize(frame.image, (480, 360), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])
        if not ok:
            return None
        self._jpeg_cache[which] = (frame.seq, bytes(buf))
        return bytes(buf)

    def _page_preview(self) -> bytes | None:
        """The last page captured of the current material (the citizen checks it)."""
        cached = self._jpeg_cache.get("page")
        if cached is None or self.session.state is not State.CAPTURE:
            return None
        return cached[1]

    def _clerk_jpeg(self) -> bytes | None:
        peer = self.peer
        if peer is None or self.session.state is not State.IN_CALL:
            return None
        return peer.incoming.latest_jpeg
