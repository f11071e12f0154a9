"""Shared fixtures: where ../shared lives, and logs routed through the standard library."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from tongban import logs

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(autouse=True, scope="session")
def _logs_to_stderr() -> None:
    """Library logs go through the standard library in tests, as in the services."""
    logs.configure("debug")


@pytest.fixture
def shared_dir() -> Path:
    """../shared beside the project; tests that need it skip with a reason without it."""
    if not (SHARED / "testdata").is_dir():
        pytest.skip("../shared/testdata is absent (a newcomer's clone): test data not available")
    return SHARED


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Every log line (debug and up) written during the test, as rendered text."""
    stream = io.StringIO()
    logs.configure("debug", stream=stream)
    yield stream
    logs.configure("debug")
