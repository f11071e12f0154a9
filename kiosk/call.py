"""The kiosk's side of one call: an aiortc peer connection that offers the face camera, the
live document camera (a second video track) and the microphone, and receives the clerk.

aiortc has no ICE restart, so a connection that breaks is not repaired: the kiosk asks the hub
for ``call.restart``, which ends this call and starts a new one under the same ticket and
case, and a fresh ``CallPeer`` takes over. ``broken`` says when that is due: the connection
failed, or media that had been arriving stopped for ``restart_after_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiortc import RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from signaling import protocol as p
from tongban.rtc import IncomingMedia, peer_connection

log = structlog.get_logger("kiosk.call")


class CallPeer:
    """One peer connection for one ``call.start``."""

    def __init__(self, call: p.CallStart, tracks: list[Any], *,
                 restart_after_s: float = 4.0, speaker: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.call_id = call.call_id
        self.case_id = call.case_id
        self.ticket_id = call.ticket_id
        self.restart_after_s = restart_after_s
        self.clock = clock
        self.pc = peer_connection([s.model_dump() for s in call.ice_servers])
        self.incoming = IncomingMedia(speaker)
        self.tracks = tracks
        for track in tracks:
            self.pc.addTrack(track)
        self.pc.on("track", self.incoming.attach)
        self.pc.on("connectionstatechange", self._state_changed)
        self.created_at = clock()
        self.offered_at: float | None = None
        self.answered_at: float | None = None
        self.failed = False
        self.closed = False
        self.restart_requested = False

    async def _state_changed(self) -> None:
        state = self.pc.connectionState
        log.info("kiosk.call_state", call=self.call_id, state=state)
        if state == "failed":
            self.failed = True

    async def offer(self) -> str:
        """Our SDP offer, with every local candidate gathered (aiortc does not trickle)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.offered_at = self.clock()
        return str(self.pc.localDescription.sdp)

    async def answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        self.answered_at = self.clock()

    async def add_candidate(self, candidate: str | None, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None:
        """A candidate the clerk's browser trickled after its answer."""
        if not candidate or self.pc.remoteDescription is None:
            return
        try:
            parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
        except (ValueError, IndexError):
            log.info("kiosk.bad_candidate", call=self.call_id)
            return
        parsed.sdpMid, parsed.sdpMLineIndex = sdp_mid, sdp_mline_index
        with contextlib.suppress(Exception):
            await self.pc.addIceCandidate(parsed)

    def broken(self) -> bool:
        """Whether this connection should be replaced by a new one."""
        if self.closed or self.restart_requested:
            return False
        if self.failed:
            return True
        now = self.clock()
        last = self.incoming.last_media_at
        if last is not None:
            return now - last > self.restart_after_s
        # answered but nothing ever arrived: give ICE and DTLS a generous while
        return self.answered_at is not None and now - self.answered_at > 4 * self.restart_after_s

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.incoming.close()
        for track in self.tracks:
            track.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), 5)
