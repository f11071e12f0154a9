"""A SIMULATED reader on a pty pair for driver tests, and a config that points at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.idcard.cards import load_card
from devices.idcard.reader import ReaderConfig, ReaderTimeouts
from devices.idcard.simulator import VirtualReader


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[VirtualReader]:
    """A virtual reader at wire speed with the elderly resident's card, behind a stable link."""
    reader = VirtualReader(load_card("resident-elderly"), link=tmp_path / "ttyIDCARD", seed=7)
    reader.start()
    yield reader
    reader.stop()


@pytest.fixture
def config(sim: VirtualReader) -> ReaderConfig:
    """Short timeouts so fault tests stay quick; one retry like the default."""
    return ReaderConfig(
        port=sim.path,
        timeouts=ReaderTimeouts(control=0.5, find=0.5, select=0.5, read=0.8,
                                read_fingerprint=1.0),
        retries=1, poll_interval=0.05, reopen_interval=0.1,
    )
