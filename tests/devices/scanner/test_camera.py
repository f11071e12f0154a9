"""Camera sources through the real OpenCV capture path: video file, image folder (with an
unplug and a return), and the SIMULATED camera."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from devices.camera import (
    CameraConfig,
    CameraError,
    CameraGoneError,
    ImageSource,
    OpenCVSource,
    make_source,
)
from devices.scanner.camera import DocumentCamera, SimulatedDocumentSource
from devices.scanner.pipeline import PageScanner, ScannerConfig
from devices.scanner.synthetic import Difficulty, SceneSpec, render_scene


def _write_video(path: Path, frames: int = 30, size: tuple[int, int] = (640, 480)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 15, size)
    assert writer.isOpened()
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), i * 8 % 255, np.uint8)
        writer.write(frame)
    writer.release()


def test_video_file_source_through_opencv(tmp_path: Path) -> None:
    video = tmp_path / "mat.avi"
    _write_video(video)
    config = CameraConfig(source=str(video), preview_size=(320, 240), frame_timeout=5)
    camera = DocumentCamera(config)
    assert isinstance(camera.source, OpenCVSource)
    with camera:
        first = camera.latest()
        second = camera.latest(first.seq)
        assert second.seq > first.seq
        assert first.image.shape == (480, 640, 3)
        assert camera.preview(first).shape == (240, 320, 3)
        report = camera.modes()
    assert report.backend and report.capture_got == (640, 480)
    assert not report.simulated


def test_unopenable_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CameraError):
        DocumentCamera(CameraConfig(source=str(tmp_path / "none.avi"))).start()
    with pytest.raises(CameraError, match="no image file or folder"):
        DocumentCamera(CameraConfig(source=str(tmp_path / "missing.jpg"))).start()


def test_unplugged_camera_is_reported_and_reconnected(tmp_path: Path) -> None:
    folder = tmp_path / "camera"
    folder.mkdir()
    scene = render_scene(SceneSpec(51, Difficulty.EASY))
    cv2.imwrite(str(folder / "a.png"), scene.image)
    config = CameraConfig(source=str(folder), fps=20, reconnect_interval=0.1, frame_timeout=1)
    with DocumentCamera(config) as camera:
        assert isinstance(camera.source, ImageSource)
        frame = camera.latest()
        shutil.rmtree(folder)  # the camera goes away
        deadline = time.monotonic() + 3
        while camera.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not camera.connected and camera.last_error
        with pytest.raises(CameraGoneError):
            camera.latest(camera.latest(0, timeout=0.1).seq, timeout=0.4)
        folder.mkdir()  # and comes back
        cv2.imwrite(str(folder / "a.png"), scene.image)
        deadline = time.monotonic() + 3
        while not camera.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert camera.connected
        fresh = camera.latest(camera.latest(0).seq, timeout=2)
        assert fresh.image.shape == scene.image.shape
        assert fresh.seq > frame.seq


def test_a_camera_absent_at_start_is_waited_for(tmp_path: Path) -> None:
    video = tmp_path / "camera.avi"  # not there yet: a service booting before its camera
    config = CameraConfig(source=str(video), fps=20, reconnect_interval=0.1, frame_timeout=1)
    camera = DocumentCamera(config).start(keep_trying=True)
    try:
        assert not camera.connected and camera.last_error
        with pytest.raises(CameraGoneError):
            camera.latest(timeout=0.3)
        _write_video(video)
        assert camera.latest(timeout=3).image.shape == (480, 640, 3) and camera.connected
    finally:
        camera.stop()


def test_simulated_camera_is_labelled_and_captures_a_page() -> None:
    config = ScannerConfig(camera=CameraConfig(source="sim:3", capture_size=(1440, 1080),
                                               fps=20), stable_seconds=0.6)
    assert make_source("sim:3", config.camera, SimulatedDocumentSource).simulated
    with pytest.raises(CameraError, match="no simulator"):
        make_source("sim", config.camera)
    with DocumentCamera(config.camera) as camera:
        assert camera.simulated
        page = PageScanner(camera, config).wait_for_page(timeout=20)
    assert page.image.shape[0] > page.image.shape[1]  # the first simulated page is A4 portrait
    assert page.report.ok
