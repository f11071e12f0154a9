"""``[face]`` in a kiosk's config file: the comparison, liveness and the face camera."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from devices.camera import CameraConfig
from kiosk.identity.liveness import LivenessConfig
from kiosk.identity.verify import VerifyConfig
from tongban.config import load_config


def _face_camera() -> CameraConfig:
    return CameraConfig(source="0", preview_size=(640, 480), capture_size=(1280, 960), fps=15)


class FaceConfig(VerifyConfig):
    """Verification settings plus ``[face.liveness]`` and ``[face.camera]``."""

    attempts: int = Field(3, ge=1, le=10, description="face checks per session; then the case "
                                                      "goes to the clerk marked as failed")
    liveness: LivenessConfig = Field(default_factory=LivenessConfig)
    camera: CameraConfig = Field(default_factory=_face_camera)


class FaceSettings(BaseModel):
    """The part of a config file that ``tongban face`` reads; other sections are ignored."""

    model_config = ConfigDict(extra="ignore")

    face: FaceConfig = Field(default_factory=FaceConfig)


def load_face_config(path: Path | None) -> FaceConfig:
    return load_config(FaceSettings, path).face
