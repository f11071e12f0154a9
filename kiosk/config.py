"""A kiosk's config file: ``[kiosk]`` (identity, hub, desks, screen, spool) beside the device
sections ``[idcard]``, ``[scanner]`` and ``[face]`` that the device commands read too."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from devices.doctor import NetworkConfig
from devices.idcard.reader import ReaderConfig
from devices.scanner.pipeline import ScannerConfig
from kiosk.identity.config import FaceConfig
from tongban.config import load_config


class KioskSection(NetworkConfig):
    """``[kiosk]``: the doctor's keys (hub, desks, STUN/TURN, spool) and the service's own."""

    model_config = ConfigDict(extra="forbid")

    kiosk_id: str = Field("kiosk-1", min_length=2, max_length=64,
                          description="this kiosk's credential id at the hub and the desks")
    key_file: Path = Field(Path("kiosk-key.pem"), description="this kiosk's Ed25519 private "
                                                              "key (from `tongban signaling "
                                                              "credentials create`)")
    ca_file: Path | None = Field(None, description="CA bundle for the hub and desks (HTTPS)")
    screen_host: str = Field("127.0.0.1", description="the touch screen is served here only")
    screen_port: int = Field(8700, ge=0, le=65535)
    work_dir: Path = Field(Path("kiosk-work"), description="the session's files (wiped)")
    catalogue: Path | None = Field(None, description="centres and matters (default: built in)")
    microphone: str | None = Field(None, description="ffmpeg input for the microphone, e.g. "
                                                     "'default' (ALSA); none: silence")
    microphone_format: str = Field("alsa", description="ffmpeg input format (alsa, pulse)")
    speaker: str | None = Field(None, description="ffmpeg output for the clerk's voice, e.g. "
                                                  "'default' (ALSA); none: not played")
    restart_after_s: float = Field(4.0, gt=0, le=60, description="a call whose media stays "
                                                                 "broken this long is replaced")
    simulated: bool = Field(False, description="devices are the simulators (demo only)")

    @field_validator("screen_host")
    @classmethod
    def _no_public_screen(cls, value: str) -> str:
        if value not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("must be a loopback address (the touch screen is local only)")
        return value

    def desk_for(self, centre: str) -> str | None:
        return self.desks.get(centre) or self.desk_url


class KioskConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kiosk: KioskSection = Field(default_factory=KioskSection)
    idcard: ReaderConfig = Field(default_factory=ReaderConfig)
    scanner: ScannerConfig = Field(default_factory=ScannerConfig)
    face: FaceConfig = Field(default_factory=FaceConfig)


def load_kiosk_config(path: Path | None) -> KioskConfig:
    return load_config(KioskConfig, path)
