"""``tongban face`` as run from a shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2

from .conftest import load

TONGBAN = [sys.executable, "-m", "tongban"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TONGBAN, *args], capture_output=True, text=True, timeout=120,
                          check=False, env=dict(os.environ))


def test_verify_json_fields(faces: Path) -> None:
    result = run("face", "verify", "--card", str(faces / "obama.jpg"), "--live",
                 str(faces / "obama-480p.jpg"), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"decision", "distance", "threshold", "reasons", "ms"} <= set(data)
    assert data["decision"] == "match" and data["distance"] < 0.42


def test_verify_two_people_and_impostor(faces: Path) -> None:
    two = json.loads(run("face", "verify", "--card", str(faces / "biden.jpg"), "--live",
                         str(faces / "two_people.jpg"), "--json").stdout)
    assert two["decision"] == "multiple_faces"
    impostor = json.loads(run("face", "verify", "--card", str(faces / "biden.jpg"), "--live",
                              str(faces / "obama.jpg"), "--json").stdout)
    assert impostor["decision"] == "no_match"


def test_verify_from_a_video(faces: Path, tmp_path: Path) -> None:
    video = tmp_path / "live.avi"
    frame = load(faces, "obama-480p.jpg")
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 15,
                             (frame.shape[1], frame.shape[0]))
    for _ in range(30):
        writer.write(frame)
    writer.release()
    data = json.loads(run("face", "verify", "--card", str(faces / "obama.jpg"), "--live",
                          str(video), "--frames", "3", "--json").stdout)
    assert data["frames"] == 3 and data["decision"] == "match"


def test_card_without_a_face_is_one_line(tmp_path: Path, faces: Path) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), load(faces, "obama.jpg")[:60, :60] * 0)
    result = run("face", "verify", "--card", str(blank), "--live", str(faces / "obama.jpg"))
    assert result.returncode == 31
    assert result.stderr.strip() == "error: no face found in the card photo"


def test_liveness_simulated_face_passes_and_says_so() -> None:
    result = run("face", "liveness", "--source", "sim", "--seed", "4", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["passed"] is True and data["simulated"] is True
    assert len(data["steps"]) in (2, 3)  # left and right in random order, maybe one more
    assert data["sequence"] == [s["step"] for s in data["steps"]] and data["challenge_id"]


def test_liveness_on_a_video_of_a_photo_fails(faces: Path, tmp_path: Path) -> None:
    video = tmp_path / "photo.avi"
    frame = load(faces, "obama-480p.jpg")
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 15,
                             (frame.shape[1], frame.shape[0]))
    for _ in range(15):
        writer.write(frame)
    writer.release()
    result = run("face", "liveness", "--source", str(video), "--step-timeout", "1.5",
                 "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["passed"] is False and data["simulated"] is False
    assert any("no motion at all" in r for r in data["reasons"])
