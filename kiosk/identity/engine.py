"""The face engine behind a small interface, so that a stronger engine can replace dlib.

Encodings use dlib's ResNet with the 5-point landmark model for alignment. The 68-point
landmark model is used only for the optional blink step of liveness: its training data
(iBUG 300-W) restricts commercial use, so it stays off unless configured.
"""

from __future__ import annotations

import threading
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib import metadata

import numpy as np


@dataclass(frozen=True)
class Box:
    """A face box in image pixels."""

    top: int
    right: int
    bottom: int
    left: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def scaled(self, factor: float) -> Box:
        return Box(int(self.top * factor), int(self.right * factor),
                   int(self.bottom * factor), int(self.left * factor))

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.top, self.right, self.bottom, self.left)


@dataclass(frozen=True)
class Landmarks:
    """Named landmark points (x, y) in image pixels."""

    points: dict[str, list[tuple[int, int]]]

    def centre(self, name: str) -> np.ndarray:
        return np.asarray(np.asarray(self.points[name], float).mean(axis=0))


class FaceEngine(ABC):
    """What verification needs from a face engine. Blocking: call from a thread."""

    name: str = "abstract"

    @property
    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Engine and model versions, for the verification record."""

    @abstractmethod
    def detect(self, rgb: np.ndarray, upsample: int = 0) -> list[Box]: ...

    @abstractmethod
    def landmarks(self, rgb: np.ndarray, boxes: list[Box], *, detailed: bool = False
                  ) -> list[Landmarks]: ...

    @abstractmethod
    def encode(self, rgb: np.ndarray, boxes: list[Box], *, jitters: int = 1
               ) -> list[np.ndarray]:
        """One encoding per box; ``jitters`` > 1 averages that many jittered copies."""

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> float:
        """Euclidean distance between two encodings."""
        return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


class DlibEngine(FaceEngine):
    """face_recognition (dlib HOG detector, 5-point alignment, ResNet-34 encodings)."""

    name = "dlib-face_recognition"

    def __init__(self) -> None:
        with warnings.catch_warnings():  # face_recognition_models imports pkg_resources
            warnings.simplefilter("ignore")
            import face_recognition

        self._fr = face_recognition
        self._lock = threading.Lock()  # dlib's detector objects are shared module state

    @property
    def versions(self) -> dict[str, str]:
        def version(package: str) -> str:
            try:
                return metadata.version(package)
            except metadata.PackageNotFoundError:
                return "unknown"

        return {
            "engine": self.name,
            "face_recognition": version("face-recognition"),
            "dlib": version("dlib-bin"),
            "models": version("face-recognition-models"),
            "detector": "dlib HOG frontal face detector",
            "landmarks": "shape_predictor_5_face_landmarks",
            "encoder": "dlib_face_recognition_resnet_model_v1",
        }

    def detect(self, rgb: np.ndarray, upsample: int = 0) -> list[Box]:
        with self._lock:
            found = self._fr.face_locations(rgb, number_of_times_to_upsample=upsample,
                                            model="hog")
        return [Box(*loc) for loc in found]

    def landmarks(self, rgb: np.ndarray, boxes: list[Box], *, detailed: bool = False
                  ) -> list[Landmarks]:
        with self._lock:
            found = self._fr.face_landmarks(rgb, [b.as_tuple() for b in boxes],
                                             model="large" if detailed else "small")
        return [Landmarks({k: [tuple(p) for p in v] for k, v in f.items()}) for f in found]

    def encode(self, rgb: np.ndarray, boxes: list[Box], *, jitters: int = 1
               ) -> list[np.ndarray]:
        with self._lock:
            return list(self._fr.face_encodings(rgb, [b.as_tuple() for b in boxes],
                                                num_jitters=jitters, model="small"))


_default: DlibEngine | None = None


def default_engine() -> DlibEngine:
    """One shared dlib engine per process (loading the models takes a while)."""
    global _default  # noqa: PLW0603 - a process-wide cache of loaded models
    if _default is None:
        _default = DlibEngine()
    return _default
