"""The kiosk's touch screen: a page on localhost for a full-screen browser, showing the
session's current screen and sending the citizen's touches back as events."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from kiosk import words
from kiosk.events import EventError, from_screen
from kiosk.session import PROMPTS, STILL_THERE, Action, Session, TransitionError
from tongban.serving import close_long_lived

STATIC = Path(__file__).parent / "static"


def _spoken() -> dict[str, str]:
    """Every sentence the kiosk may speak, by key: each screen's prompt, "are you still
    there?", and the liveness prompts (the face check speaks each turn it asks for)."""
    from kiosk.identity.liveness import PROMPTS as LIVENESS

    out = {state.value: text for state, text in PROMPTS.items()}
    out["still_there"] = STILL_THERE
    out.update({f"liveness_{step.value}": zh for step, (zh, _) in LIVENESS.items()})
    return out


SPOKEN = _spoken()


class TouchScreen:
    """Serves the page and the session's screen; only the citizen's own events come in."""

    def __init__(self, session: Session, speech_dir: Path | None = None,
                 on_actions: Callable[[list[Action]], Awaitable[None]] | None = None,
                 lock: asyncio.Lock | None = None) -> None:
        self.session = session
        self.on_actions = on_actions
        """The kiosk service's hook: carries out what a touch asks for (wipe, send, ...)."""
        self.lock = lock or asyncio.Lock()
        self.speech_dir = speech_dir
        self._voice = asyncio.Semaphore(1)
        self.extras: dict[str, Any] = {}
        """What the service adds to the screen (liveness prompt, capture hint, call state)."""
        self.videos: dict[str, Callable[[], bytes | None]] = {}
        """Live pictures by name (face, document, clerk): the newest JPEG of each."""
        self.app = web.Application(client_max_size=64 * 1024)
        self.app.router.add_get("/", self.index)
        self.app.router.add_get("/api/screen", self.screen)
        self.app.router.add_post("/api/event", self.event)
        self.app.router.add_get("/api/catalogue", self.catalogue)
        self.app.router.add_get("/api/speech/{state}.wav", self.speech)
        self.app.router.add_get("/api/video/{name}.mjpg", self.video)
        self.app.router.add_get("/api/receipt.svg", self.receipt_qr)
        self.app.router.add_static("/static", STATIC, show_index=False)
        self.long_lived = close_long_lived(self.app)
        """Ends the picture streams when the screen's server stops (they never end else)."""

    async def index(self, request: web.Request) -> web.FileResponse:
        del request
        return web.FileResponse(STATIC / "index.html")

    def _screen(self) -> dict[str, Any]:
        return {**self.session.screen(), **self.extras,
                "videos": sorted(n for n, f in self.videos.items() if f() is not None)}

    async def video(self, request: web.Request) -> web.StreamResponse:
        """An MJPEG stream of one live picture (while the page shows it, or until the screen's
        server stops: then the stream is ended properly, never left for aiohttp to wait on)."""
        source = self.videos.get(request.match_info["name"])
        if source is None:
            raise web.HTTPNotFound()
        boundary = "tongbanframe"
        response = web.StreamResponse(headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={boundary}",
            "Cache-Control": "no-store"})
        await response.prepare(request)
        last: bytes | None = None
        repeated = True
        stopping = self.long_lived.stopping
        try:
            await response.write(f"--{boundary}\r\n".encode())
            while not stopping.is_set():
                jpeg = source()
                fresh = jpeg is not None and jpeg is not last
                if fresh or (not repeated and last is not None):
                    # Chromium shows a part once the next one starts: a still picture (a page
                    # preview) is sent a second time so that it shows at all
                    repeated = not fresh
                    last = jpeg if fresh else last
                    assert last is not None
                    await response.write(
                        f"Content-Type: image/jpeg\r\nContent-Length: {len(last)}\r\n\r\n"
                        .encode() + last + f"\r\n--{boundary}\r\n".encode())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), 0.1 if fresh or repeated else 0.3)
            await response.write_eof()
        except ConnectionResetError:  # the page went away
            pass
        return response

    async def receipt_qr(self, request: web.Request) -> web.Response:
        """The receipt's QR code (case number and kind) for the citizen's phone."""
        del request
        receipt = self.session.context.receipt
        if receipt is None or not receipt.case_number:
            raise web.HTTPNotFound()
        import io

        import segno

        text = f"TONGBAN:{receipt.case_number}:{receipt.kind}"
        out = io.BytesIO()
        segno.make(text, error="m").save(out, kind="svg", scale=10, border=2)
        return web.Response(body=out.getvalue(), content_type="image/svg+xml",
                            headers={"Cache-Control": "no-store"})

    async def screen(self, request: web.Request) -> web.Response:
        del request
        return web.json_response(self._screen())

    async def catalogue(self, request: web.Request) -> web.Response:
        del request
        c = self.session.catalogue
        return web.json_response({
            "centres": [c.model_dump() for c in c.centres],
            "matters": [{"code": m.code, "name": m.name, "centres": m.centres, "proxy": m.proxy}
                        for m in c.matters]})

    async def event(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            name, data = str(body["event"]), body.get("data") or {}
        except (ValueError, KeyError, TypeError, RecursionError):
            raise web.HTTPBadRequest(text="event and data expected") from None
        try:
            event = from_screen(name, data)  # only the citizen's own touches come in here
        except EventError as exc:
            raise web.HTTPForbidden(text=str(exc)) from None
        async with self.lock:
            try:
                actions = self.session.handle(event, time.monotonic())
            except TransitionError as exc:
                return web.json_response({"error": str(exc), **self._screen()}, status=409)
            if self.on_actions is not None:  # also with no actions: the screen changed
                await self.on_actions(actions)
        return web.json_response(self._screen())

    async def speech(self, request: web.Request) -> web.StreamResponse:
        """A screen's sentence, spoken (espeak-ng, offline). The fixed prompts are cached as
        WAV; the queue's sentences (position and wait) change with every update and are
        spoken afresh each time, so that nothing piles up."""
        key = request.match_info["state"]
        fixed = SPOKEN.get(key)
        text = fixed or words.sentence_for_key(key)
        if text is None or self.speech_dir is None or shutil.which("espeak-ng") is None:
            raise web.HTTPNotFound()
        self.speech_dir.mkdir(parents=True, exist_ok=True)
        if fixed is not None:
            path = self.speech_dir / f"{key}.wav"
            if not path.exists():
                partial = path.with_suffix(f".{os.getpid()}.{id(request)}.tmp")
                try:  # whole or not at all: another request may be reading it
                    if not await self._speak(text, partial):
                        raise web.HTTPNotFound()
                    partial.replace(path)
                finally:
                    partial.unlink(missing_ok=True)
            return web.FileResponse(path)
        path = self.speech_dir / f"{key}.{os.getpid()}.{id(request)}.tmp.wav"
        try:
            if not await self._speak(text, path):
                raise web.HTTPNotFound()
            body = await asyncio.to_thread(path.read_bytes)
        finally:
            path.unlink(missing_ok=True)
        return web.Response(body=body, content_type="audio/wav",
                            headers={"Cache-Control": "no-store"})

    async def _speak(self, text: str, path: Path) -> bool:
        """One synthesiser at a time (the kiosk is also encoding two cameras); a request that
        goes away takes its synthesiser with it."""
        async with self._voice:
            proc = await asyncio.create_subprocess_exec(
                "espeak-ng", "-v", "cmn", "-s", "140", "-w", str(path), text,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            try:
                await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        return proc.returncode == 0 and path.exists()
