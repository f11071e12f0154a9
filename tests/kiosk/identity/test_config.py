"""``[face]`` configuration: defaults, a file, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.identity.config import load_face_config
from kiosk.identity.liveness import LivenessStep
from tongban.errors import ConfigError


def test_defaults_are_strict_and_safe() -> None:
    config = load_face_config(None)
    assert config.threshold == 0.47 and config.review_band == 0.05
    assert config.liveness.use_68_point_landmarks is False
    assert config.liveness.steps == [LivenessStep.TURN_LEFT, LivenessStep.TURN_RIGHT]
    assert config.camera.preview_size == (640, 480)


def test_a_kiosk_file_sets_face_values(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text('[idcard]\nport = "/dev/ttyUSB0"\n[face]\nthreshold = 0.44\n'
                    '[face.liveness]\nstep_timeout = 8\n[face.camera]\nsource = "2"\n')
    config = load_face_config(path)
    assert config.threshold == 0.44 and config.liveness.step_timeout == 8
    assert config.camera.source == "2"


def test_bad_face_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text('[face.liveness]\nsteps = ["nod"]\n')
    with pytest.raises(ConfigError, match=r"face\.liveness\.steps"):
        load_face_config(path)
