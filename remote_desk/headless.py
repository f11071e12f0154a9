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
from collections.abc import Callable
from typing import Any

import aiohttp

from tongban.rtc import IncomingMedia, peer_connection, synthetic_video, tone


class DecisionRefused(RuntimeError):
    """The desk refused a decision (``status``: 409 for a conflict)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"decision refused: {status} {body.get('error')}")
        self.status = status
        self.body = body


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
        self.camera: Callable[[], Any] = synthetic_video
        """Makes the clerk's camera track (SIMULATED; a bench may make it lighter)."""
        self.offers: list[str] = []
        """Ticket ids offered to this clerk, in order."""
        self.seen: list[dict[str, Any]] = []
        """What the clerk's screen showed, step by step: each queue (its rows) as it changed,
        offers, calls started and ended (for the demo's scenario reports)."""
        self.t0 = time.monotonic()
        """``seen`` steps are timed from here."""
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

    def _saw(self, what: str, **detail: Any) -> None:
        self.seen.append({"t": round(time.monotonic() - self.t0, 2), "what": what, **detail})

    async def _on(self, event: str, data: dict[str, Any]) -> None:
        if event == "queue.snapshot":
            rows = [{"ticket_id": i["ticket_id"], "matter": i["matter"], "site": i["site"],
                     "state": i["state"], "offered_to": i.get("offered_to")}
                    for i in data.get("items", [])]
            shown = [{k: r[k] for k in ("matter", "site", "state")} for r in rows]
            last = next((x for x in reversed(self.seen) if x["what"] == "queue"
                         and x["centre"] == data.get("centre")), None)
            if last is None or last["rows"] != shown:
                self._saw("queue", centre=data.get("centre"), rows=shown)
            for ticket_id in [t for t, i in self.queue.items()
                              if i.get("centre", data.get("centre")) == data.get("centre")]:
                if ticket_id not in {r["ticket_id"] for r in rows}:
                    del self.queue[ticket_id]
            for item in data.get("items", []):
                self.queue[item["ticket_id"]] = {**item, "centre": data.get("centre")}
                if self.auto_accept and item.get("offered_to") == self.username and \
                        self.call is None and self.accepted_at is None:
                    await self.accept(item["ticket_id"])
        elif event == "ticket.offered":
            self.offers.append(str(data.get("ticket_id")))
            self._saw("offered", matter=data.get("matter"), site=data.get("site"))
        elif event == "call.start":
            self.call = data
            self.calls.append(data)
            self._saw("call_started", case_id=data.get("case_id"))
            await self._new_peer()
            self.call_started.set()
        elif event == "call.offer" and self.call and data.get("call_id") == self.call["call_id"]:
            await self._answer(str(data["sdp"]))
        elif event == "call.ended":
            self.ended.append(str(data.get("reason")))
            if self.call and data.get("call_id") == self.call["call_id"]:
                self._saw("call_ended", reason=data.get("reason"))
                await self._close_peer()
                self.call = None
                self.call_started.clear()
                self.accepted_at = None  # free for the next citizen

    async def accept(self, ticket_id: str) -> None:
        self.accepted_at = time.monotonic()
        self._saw("accept")
        await self.send("ticket.accept", {"ticket_id": ticket_id, "clerk_id": self.username})

    async def decline(self, ticket_id: str) -> None:
        """Hand an offered ticket back to the front of the queue."""
        self._saw("decline")
        await self.send("ticket.decline", {"ticket_id": ticket_id, "clerk_id": self.username})

    async def transfer(self, to_centre: str) -> None:
        """Transfer the citizen of the current call to another centre's queue."""
        assert self.call is not None
        self._saw("transfer", to_centre=to_centre)
        await self.send("ticket.transfer", {"ticket_id": self.call["ticket_id"],
                                            "clerk_id": self.username, "to_centre": to_centre})

    async def _new_peer(self) -> None:
        await self._close_peer()
        assert self.call is not None
        self.pc = peer_connection(self.call.get("ice_servers"))
        self.pc.on("track", self.incoming.attach)

    async def _answer(self, sdp: str) -> None:
        from aiortc import RTCSessionDescription

        pc = self.pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        # like the page: the camera goes back on the first video line, the voice on the audio
        used: set[int] = set()
        for track in (self.camera(), tone()):
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
                self._saw("decision_refused", kind=kind, status=r.status,
                          error=body.get("error"))
                raise DecisionRefused(r.status, body)
        self._saw("decided", kind=kind, case_number=body.get("case_number"))
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
