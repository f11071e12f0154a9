"""A headless clerk: what the desk page does, in Python, for tests and the call benchmark.

It logs in over the desk's HTTP API, opens the same WebSocket as the browser, says it is
available, accepts what it is offered, answers the kiosk's offer with an aiortc peer that
sends a SYNTHETIC camera picture and a tone, and decides cases. It is not a product screen
(clerks use the browser page); it exists so that call faults and timings can be measured
without a browser, and it is labelled as a stand-in wherever it appears.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import aiohttp

from tongban.rtc import IncomingMedia, synthetic_video, tone


class HeadlessClerk:
    """One clerk session against a desk server."""

    def __init__(self, base: str, username: str, password: str) -> None:
        self.base = base.rstrip("/")
        self.username = username
        self.password = password
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.me: dict[str, Any] = {}
        self.pc: Any = None
        self.call: dict[str, Any] | None = None
        self.calls: list[dict[str, Any]] = []
        self.ended: list[str] = []
        self.queue: dict[str, dict[str, Any]] = {}
        self.auto_accept = True
        self.incoming = IncomingMedia(pictures=False)
        """What the current call brought from the kiosk."""
        self.accepted_at: float | None = None
        """time.monotonic() of the last accept."""
        self.call_started = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @property
    def video_frames(self) -> int:
        return self.incoming.video_frames

    @property
    def audio_level(self) -> float:
        return self.incoming.audio_level

    @property
    def first_frame_at(self) -> float | None:
        """time.monotonic() of the current call's first decoded video frame."""
        return self.incoming.first_video_at

    async def start(self) -> None:
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with self.http.post(self.base + "/api/login", json={
                "username": self.username, "password": self.password}) as r:
            if r.status != 200:
                raise RuntimeError(f"login refused: {r.status}")
            self.me = await r.json()
        self.ws = await self.http.ws_connect(f"{self.base}/ws?csrf={self.me['csrf']}")
        self._reader = asyncio.ensure_future(self._read())
        await self.presence(True)

    async def presence(self, available: bool) -> None:
        for centre in self.me["centres"]:
            await self.send("clerk.presence", {
                "clerk_id": self.username, "centre": centre,
                "matters": self.me.get("matters", {}).get(centre, []), "available": available})

    async def send(self, event: str, data: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps({"event": event, "data": {"v": 1, **data}}))

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            body = json.loads(msg.data)
            await self._on(str(body["event"]), body.get("data") or {})

    async def _on(self, event: str, data: dict[str, Any]) -> None:
        if event == "queue.snapshot":
            for item in data.get("items", []):
                self.queue[item["ticket_id"]] = item
                if self.auto_accept and item.get("offered_to") == self.username and \
                        self.call is None and self.accepted_at is None:
                    await self.accept(item["ticket_id"])
        elif event == "call.start":
            self.call = data
            self.calls.append(data)
            await self._new_peer()
            self.call_started.set()
        elif event == "call.offer" and self.call and data.get("call_id") == self.call["call_id"]:
            await self._answer(str(data["sdp"]))
        elif event == "call.ended":
            self.ended.append(str(data.get("reason")))
            if self.call and data.get("call_id") == self.call["call_id"]:
                await self._close_peer()
                self.call = None
                self.call_started.clear()

    async def accept(self, ticket_id: str) -> None:
        self.accepted_at = time.monotonic()
        await self.send("ticket.accept", {"ticket_id": ticket_id, "clerk_id": self.username})

    async def _new_peer(self) -> None:
        from aiortc import RTCPeerConnection

        await self._close_peer()
        self.pc = RTCPeerConnection()
        self.pc.on("track", self.incoming.attach)

    async def _answer(self, sdp: str) -> None:
        from aiortc import RTCSessionDescription

        pc = self.pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        # like the page: the camera goes back on the first video line, the voice on the audio
        used: set[int] = set()
        for track in (synthetic_video(), tone()):
            for i, t in enumerate(pc.getTransceivers()):
                if i not in used and t.kind == track.kind:
                    used.add(i)
                    t.direction = "sendrecv"
                    t.sender.replaceTrack(track)
                    break
        await pc.setLocalDescription(await pc.createAnswer())
        assert self.call is not None
        await self.send("call.answer", {"call_id": self.call["call_id"],
                                        "sdp": pc.localDescription.sdp})

    async def _close_peer(self) -> None:
        await self.incoming.close()
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await self.pc.close()
            self.pc = None

    async def decide(self, case_id: str, kind: str = "accept", **extra: Any) -> dict[str, Any]:
        """Decide the case and send the receipt to the kiosk, as the page does."""
        assert self.http is not None
        headers = {"X-CSRF-Token": self.me["csrf"]}
        async with self.http.post(f"{self.base}/api/cases/{case_id}/decision",
                                  json={"kind": kind, **extra}, headers=headers) as r:
            body: dict[str, Any] = await r.json()
            if r.status != 200:
                raise RuntimeError(f"decision refused: {r.status} {body}")
        if self.call is not None:
            await self.send("call.command", {
                "call_id": self.call["call_id"], "name": "receipt",
                "args": {"case_number": body.get("case_number") or "",
                         "kind": body["decision"]["kind"], "text": body["decision"]["receipt"]}})
        return body

    async def hang_up(self) -> None:
        """End the call without deciding: the citizen goes back to the front of the queue."""
        if self.call is not None:
            await self.send("call.end", {"call_id": self.call["call_id"], "reason": "hangup"})
            await self._close_peer()
            self.call = None
            self.call_started.clear()
        self.accepted_at = None
        self.incoming = IncomingMedia(pictures=False)

    async def case(self, case_id: str) -> dict[str, Any] | None:
        assert self.http is not None
        async with self.http.get(f"{self.base}/api/cases/{case_id}") as r:
            if r.status != 200:
                return None
            body: dict[str, Any] = await r.json()
            return body

    async def close_browser(self) -> None:
        """The browser goes away: socket closed, peer gone, nothing said."""
        await self._close_peer()
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()

    async def close(self) -> None:
        await self.close_browser()
        if self.http is not None:
            await self.http.close()
