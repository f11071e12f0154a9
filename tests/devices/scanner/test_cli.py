"""``tongban devices scanner`` as a technician runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from devices.scanner.geometry import iou

TONGBAN = [sys.executable, "-m", "tongban"]


def run(*args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TONGBAN, *args], capture_output=True, text=True, timeout=timeout,
                          check=False, env={**os.environ, **(env or {})})


def test_simulate_then_detect_json(tmp_path: Path) -> None:
    out = tmp_path / "scenes"
    assert run("devices", "scanner", "simulate", "--out", str(out), "--count", "4").returncode == 0
    images = sorted(str(p) for p in out.glob("scene-*.jpg"))
    result = run("devices", "scanner", "detect", *images, "--json", "--reference",
                 str(out / "reference-0.jpg"))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 4
    for record in lines:
        assert set(record) >= {"image", "found", "corners", "page_kind", "sharpness", "glare",
                               "ms"}
        truth = json.loads(Path(record["image"].replace(".jpg", ".json")).read_text())
        if record["image"].endswith("scene-0.jpg"):
            assert record["found"]
            assert iou(np.array(record["corners"]), np.array(truth["corners"])) > 0.98
            assert record["page_kind"] == truth["page_kind"]


def test_detect_without_a_page_exits_non_zero(tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((480, 640, 3), 30, np.uint8))
    result = run("devices", "scanner", "detect", str(blank), "--json")
    assert result.returncode == 24
    assert json.loads(result.stdout)["found"] is False


def test_capture_from_the_simulated_camera(tmp_path: Path) -> None:
    out = tmp_path / "pages"
    result = run("devices", "scanner", "capture", "--source", "sim", "--out", str(out),
                 "--pdf", "--json", env={"TONGBAN_SCANNER__CAMERA__CAPTURE_SIZE": "[1440, 1080]"})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["simulated"] is True and data["mode"] == "document"
    assert Path(data["pages"][0]["path"]).read_bytes()[:2] == b"\xff\xd8"
    assert Path(data["pdf"]).read_bytes().startswith(b"%PDF")


def test_modes_and_reference(tmp_path: Path) -> None:
    result = run("devices", "scanner", "modes", "--source", "sim", "--json",
                 env={"TONGBAN_SCANNER__CAMERA__CAPTURE_SIZE": "[1440, 1080]"})
    assert result.returncode == 0, result.stderr
    modes = json.loads(result.stdout)
    assert modes["simulated"] is True and modes["capture_got"] == [1440, 1080]
    ref = tmp_path / "mat.png"
    assert run("devices", "scanner", "reference", "--source", "sim", "--out",
               str(ref)).returncode == 0
    assert ref.exists()


def test_bad_source_is_one_line(tmp_path: Path) -> None:
    result = run("devices", "scanner", "modes", "--source", str(tmp_path / "nothing.avi"))
    assert result.returncode == 21
    assert result.stderr.startswith("error: cannot open camera")
