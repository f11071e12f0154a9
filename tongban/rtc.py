"""WebRTC pieces both ends use: peer connections that use only the ICE servers given (never
aiortc's default public STUN server), the receiving side's meter (frames, audio level, the
newest picture), and SIMULATED tracks (a moving dot, a tone) for stand-ins, demos and
benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import cv2
import numpy as np
from aiortc.mediastreams import MediaStreamError


def peer_connection(servers: list[dict[str, Any]] | None = None) -> Any:
    """An aiortc peer connection with exactly these ICE servers (``urls``, ``username``,
    ``credential`` each, as ``call.start`` gives them); none given: host candidates only.
    aiortc falls back to a public STUN server when it is given no list at all, which a kiosk
    on a closed network, a test or a benchmark must never contact."""
    from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

    ice = [RTCIceServer(urls=list(s["urls"]), username=s.get("username"),
                        credential=s.get("credential"))
           for s in servers or [] if s.get("urls")]
    return RTCPeerConnection(RTCConfiguration(iceServers=ice))


def synthetic_video(colour: tuple[int, int, int] = (90, 60, 30),
                    size: tuple[int, int] = (480, 360)) -> Any:
    """A SIMULATED camera track: a dot moving across a plain background."""
    from aiortc import VideoStreamTrack
    from av import VideoFrame

    w, h = size

    class Synthetic(VideoStreamTrack):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        async def recv(self) -> Any:
            pts, time_base = await self.next_timestamp()
            image = np.full((h, w, 3), colour, np.uint8)
            cv2.circle(image, (w // 2 + int(w * 0.3 * np.sin(self.n / 10)), h // 2), h // 12,
                       (0, 200, 255), -1)
            self.n += 1
            frame = VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = pts, time_base
            return frame

    return Synthetic()


def tone(hz: float = 440.0) -> Any:
    """A SIMULATED voice: a steady tone in aiortc's own paced 20 ms frames (its silence,
    filled in at the frame's own sample rate and timestamps)."""
    from aiortc.mediastreams import AudioStreamTrack
    from av import AudioFrame

    class Tone(AudioStreamTrack):
        async def recv(self) -> Any:
            frame: Any = await super().recv()
            t = (np.arange(frame.samples) + frame.pts) / frame.sample_rate
            wave = (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)
            out = AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
            out.pts, out.sample_rate, out.time_base = frame.pts, frame.sample_rate, \
                frame.time_base
            return out

    return Tone()


class IncomingMedia:
    """What the clerk sends: the newest video frame (for the touch screen) and audio levels."""

    def __init__(self, speaker: str | None = None, *, pictures: bool = True) -> None:
        self.speaker = speaker
        self.pictures = pictures
        """Keep the newest video frame as JPEG (for a screen); off where nobody looks."""
        self.video_frames = 0
        self.audio_frames = 0
        self.audio_level = 0.0
        """Largest mean absolute sample (int16 scale) received."""
        self.last_media_at: float | None = None
        self.first_video_at: float | None = None
        self.latest_jpeg: bytes | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._recorder: Any = None

    def attach(self, track: Any) -> None:
        if track.kind == "audio" and self.speaker:
            from aiortc.contrib.media import MediaRecorder, MediaRelay

            relay = MediaRelay()
            self._recorder = MediaRecorder(self.speaker, format="alsa")
            self._recorder.addTrack(relay.subscribe(track))
            self._tasks.append(asyncio.ensure_future(self._recorder.start()))
            track = relay.subscribe(track)
        self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: Any) -> None:
        jpeg_every = 0.1
        last_jpeg = 0.0
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                now = time.monotonic()
                self.last_media_at = now
                if track.kind == "video":
                    self.video_frames += 1
                    if self.first_video_at is None:
                        self.first_video_at = now
                    if self.pictures and now - last_jpeg >= jpeg_every:
                        last_jpeg = now
                        image = frame.to_ndarray(format="bgr24")
                        self.latest_jpeg = await asyncio.to_thread(_jpeg, image)
                else:
                    self.audio_frames += 1
                    samples = frame.to_ndarray().astype(np.float32)
                    self.audio_level = max(self.audio_level, float(np.abs(samples).mean()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._recorder is not None:
            with contextlib.suppress(Exception):
                await self._recorder.stop()
        self._tasks.clear()
        self.latest_jpeg = None


def _jpeg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])
    return bytes(buf) if ok else b""
