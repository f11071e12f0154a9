"""The test faces from ../shared (read in place) and a chip-quality card photo made from them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from devices.facecam import card_photo_from_portrait
from kiosk.identity.engine import DlibEngine, default_engine
from kiosk.identity.verify import Verifier


@pytest.fixture(scope="session")
def engine() -> DlibEngine:
    return default_engine()


@pytest.fixture
def verifier(engine: DlibEngine) -> Verifier:
    return Verifier(engine)


@pytest.fixture
def faces(shared_dir: Path) -> Path:
    return shared_dir / "testdata" / "faces"


def load(faces: Path, name: str) -> np.ndarray:
    image = cv2.imread(str(faces / name), cv2.IMREAD_COLOR)
    assert image is not None, name
    return image


def chip_photo(image: np.ndarray, engine: DlibEngine) -> np.ndarray:
    """Stand-in for a decoded card photo (see ../shared/testdata/faces/README.md)."""
    del engine
    return card_photo_from_portrait(image)
