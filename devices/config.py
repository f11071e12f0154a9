"""The devices sections of a kiosk's config file (``[idcard]``, ``[scanner]``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from devices.idcard.reader import ReaderConfig
from devices.scanner.pipeline import ScannerConfig
from tongban.config import load_config


class DevicesConfig(BaseModel):
    """Device settings; other components' sections in the same file are ignored."""

    model_config = ConfigDict(extra="ignore")

    idcard: ReaderConfig = Field(default_factory=ReaderConfig)
    scanner: ScannerConfig = Field(default_factory=ScannerConfig)


def load_devices_config(path: Path | None) -> DevicesConfig:
    return load_config(DevicesConfig, path)
