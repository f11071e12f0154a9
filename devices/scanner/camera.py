"""The document camera: the generic camera with the SIMULATED document scenes as its ``sim``."""

from __future__ import annotations

import time

import numpy as np

from devices.camera import Camera, CameraConfig, SimulatedSource
from devices.scanner.synthetic import Difficulty, SimulatedDocumentCamera


class SimulatedDocumentSource(SimulatedSource):
    """The SIMULATED document camera (see ``synthetic.SimulatedDocumentCamera``)."""

    def __init__(self, seed: int, config: CameraConfig,
                 difficulty: Difficulty = Difficulty.EASY) -> None:
        super().__init__(config)
        self.sim = SimulatedDocumentCamera(seed, size=config.preview_size, difficulty=difficulty)

    def read(self) -> np.ndarray | None:
        return self.sim.frame(self.now())

    def read_still(self, size: tuple[int, int]) -> np.ndarray | None:
        # rendering a large still takes seconds; the simulated world waits for it, as a real
        # page lies still while a real camera takes its still
        started = time.monotonic()
        image = self.sim.frame(self.now(), size)
        self._started += time.monotonic() - started
        return image

    def reference(self) -> np.ndarray:
        return self.sim.reference()


class DocumentCamera(Camera):
    """The document camera (高拍仪); ``source = "sim"`` is the SIMULATED document camera."""

    simulated_factory = staticmethod(SimulatedDocumentSource)
