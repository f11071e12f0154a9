"""``tongban face calibrate``: distance distributions, FAR/FRR per threshold and the threshold
meeting a target FAR, on the shared test faces; bad pair lists are one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiosk.identity.calibrate import calibrate

from .test_cli import run

GENUINE = [("obama.jpg", "obama2.jpg"), ("obama2.jpg", "obama-480p.jpg"),
           ("obama3.jpg", "obama_small.jpg"), ("biden.jpg", "biden2.jpg")]
IMPOSTOR = [("obama.jpg", "biden.jpg"), ("biden.jpg", "obama2.jpg"),
            ("biden2.jpg", "obama-480p.jpg"), ("obama3.jpg", "biden2.jpg")]


def pair_list(tmp_path: Path, faces: Path, rows: list[str] | None = None) -> Path:
    path = tmp_path / "pairs.csv"
    if rows is None:
        rows = ["card,live,label",
                *(f"{faces / a},{faces / b},same" for a, b in GENUINE),
                *(f"{faces / a},{faces / b},different" for a, b in IMPOSTOR)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.timeout(180)
def test_calibrate_on_the_test_faces(tmp_path: Path, faces: Path) -> None:
    result = run("face", "calibrate", str(pair_list(tmp_path, faces)), "--chip-quality",
                 "--target-far", "0.01", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["genuine"]["n"] == 4 and data["impostor"]["n"] == 4
    assert data["genuine"]["max"] < data["impostor"]["min"]
    threshold = data["threshold"]
    row = next(r for r in data["table"] if r["threshold"] == threshold)
    assert row["far"] == 0.0  # no impostor accepted at the chosen threshold
    assert threshold >= data["genuine"]["max"] - 0.01 or row["frr"] > 0
    fars = [r["far"] for r in data["table"]]
    frrs = [r["frr"] for r in data["table"]]
    assert fars == sorted(fars) and frrs == sorted(frrs, reverse=True)
    assert data["far_upper_bound_95"] == 0.75  # what 4 impostor pairs can show: little
    assert any("rule of three" in n for n in data["notes"])


def test_the_threshold_is_the_largest_meeting_the_target() -> None:
    result = calibrate([0.30, 0.35, 0.44], [0.43, 0.60, 0.70, 0.80], target_far=0.25)
    assert result.threshold == 0.59  # 1 of 4 impostors (0.43) accepted: FAR 0.25 allowed
    strict = calibrate([0.30, 0.35, 0.44], [0.43, 0.60, 0.70, 0.80], target_far=0.1)
    assert strict.threshold == 0.42


@pytest.mark.parametrize(("rows", "message"), [
    (["card,live,label", "a.jpg,b.jpg,maybe"], "pairs.csv line 2: label must be same or "
                                               "different, not 'maybe'"),
    (["a.jpg,b.jpg"], "pairs.csv line 1: expected card,live,label (3 columns), got 2"),
    (["card,live,label", "missing.jpg,b.jpg,same"], "pairs.csv line 2: no such image "
                                                    "missing.jpg"),
    (["card,live,label"], "pairs.csv: no pairs"),
])
def test_a_bad_pair_list_is_one_line_and_exit_2(tmp_path: Path, faces: Path, rows: list[str],
                                                message: str) -> None:
    if "a.jpg,b.jpg" in rows[-1]:
        (tmp_path / "a.jpg").write_bytes((faces / "obama.jpg").read_bytes())
        (tmp_path / "b.jpg").write_bytes((faces / "biden.jpg").read_bytes())
    result = run("face", "calibrate", str(pair_list(tmp_path, faces, rows)))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {message}"


def test_an_image_without_a_face_names_its_line(tmp_path: Path, faces: Path) -> None:
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "blank.jpg"), np.full((200, 200, 3), 128, np.uint8))
    rows = ["card,live,label", f"{faces / 'obama.jpg'},blank.jpg,same",
            f"{faces / 'obama.jpg'},{faces / 'biden.jpg'},different"]
    result = run("face", "calibrate", str(pair_list(tmp_path, faces, rows)))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: pairs.csv line 2: the live image "
                                            "blank.jpg fails the live gates")


def test_help_teaches_the_format_and_its_limits() -> None:
    result = run("face", "calibrate", "--help")
    assert result.returncode == 0
    for text in ("card,live,label", "same or different", "--target-far", "3/N",
                 "30,000 impostor pairs", "--chip-quality"):
        assert text in result.stdout, text
