"""The call's media on the kiosk: outgoing tracks from the face camera, the document camera
and the microphone (what comes back from the clerk is ``tongban.rtc.IncomingMedia``).

Tracks read the cameras' newest frame without waiting (the grabbers run on their own threads),
so the event loop never blocks on a device; aiortc encodes on its own worker threads.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import cv2
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from av import VideoFrame

from devices.camera import Camera
from tongban.rtc import tone

VIDEO_CLOCK = 90_000


class CameraTrack(MediaStreamTrack):
    """A video track from a kiosk camera, paced at ``fps``, scaled to at most ``size``."""

    kind = "video"

    def __init__(self, camera: Camera, *, fps: float, size: tuple[int, int]) -> None:
        super().__init__()
        self.camera = camera
        self.fps = fps
        self.size = size
        self._start: float | None = None
        self._count = 0
        self._blank = np.zeros((size[1], size[0], 3), np.uint8)

    def _image(self) -> np.ndarray:
        frame = self.camera.peek()
        if frame is None:
            return self._blank
        image = frame.image
        h, w = image.shape[:2]
        tw, th = self.size
        if w > tw or h > th:
            scale = min(tw / w, th / h)
            image = cv2.resize(image, (int(w * scale) // 2 * 2, int(h * scale) // 2 * 2),
                               interpolation=cv2.INTER_AREA)
        return image

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._count / self.fps
        if due > now:
            await asyncio.sleep(due - now)
        pts = int(self._count / self.fps * VIDEO_CLOCK)
        self._count += 1
        frame = VideoFrame.from_ndarray(self._image(), format="bgr24")
        frame.pts, frame.time_base = pts, fractions.Fraction(1, VIDEO_CLOCK)
        return frame


def microphone_track(device: str | None, fmt: str, *, simulated: bool) -> Any:
    """The microphone (ffmpeg input), the simulated voice, or silence."""
    if device:
        from aiortc.contrib.media import MediaPlayer

        player = MediaPlayer(device, format=fmt, options={"channels": "1"})
        if player.audio is None:
            raise RuntimeError(f"microphone {device} ({fmt}) gives no audio")
        return player.audio
    if simulated:  # the demo's SIMULATED citizen: a tone the clerk hears and tests measure
        return tone(523.25)
    return AudioStreamTrack()  # aiortc's silence keeps the audio line; the clerk sees it mute
