"""``[desk]`` in a desk server's config file."""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from remote_desk.blobs import parse_key
from tongban.config import load_config
from tongban.errors import ConfigError


class DeskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8443, ge=0, le=65535)
    database: str = Field("sqlite:///desk.db", description="sqlite:///path or postgresql://...")
    files_dir: Path = Path("desk-files")
    files_key_env: str = Field("TONGBAN_DESK_FILES_KEY", description="environment variable "
                                                                     "holding the AES key")
    audit_anchor_file: Path | None = Field(None, description="append-only file of signed "
                                           "audit-chain heads (default: files_dir/"
                                           "audit-anchors.jsonl); keep a copy on another host")
    audit_anchor_seconds: float = Field(5.0, gt=0, le=3600, description="how often the "
                                        "chain's head is anchored while it moves")
    kiosk_credentials: Path = Field(Path("hub-credentials.json"),
                                    description="kiosks' public keys (the hub's file format)")
    centres: list[str] = Field(default_factory=list, description="centres this desk serves")
    matters: dict[str, list[str]] = Field(default_factory=dict,
                                          description="per centre, the matters its clerks take")
    behind_tls: bool = Field(False, description="TLS ends at a proxy in front: cookies are "
                             "Secure and HSTS is sent (also whenever tls_cert is set)")
    tls_cert: Path | None = Field(None, description="serve HTTPS with this certificate chain")
    tls_key: Path | None = Field(None, description="... and this private key")
    session_idle_minutes: float = Field(15, gt=0, le=480)
    session_check_seconds: float = Field(2.0, gt=0, le=60, description="how often sessions "
                                         "are checked: idle, account disabled or changed "
                                         "(their sockets close within this)")
    login_attempts: int = Field(5, ge=1, le=50, description="failed logins per window of one "
                                                            "user name at one address")
    login_address_attempts: int = Field(20, ge=1, le=1000, description="failed logins per "
                                        "window from one address, whatever the names")
    login_window_seconds: int = Field(300, ge=10, le=86400)
    password_workers: int = Field(2, ge=1, le=16, description="threads checking passwords "
                                  "(argon2), off the event loop")
    max_json_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024, description="body limit "
                                "of every request but the intake")
    max_upload_bytes: int = Field(200 * 1024 * 1024, ge=1024, description="body limit of an "
                                  "intake (streamed to disk under files_dir)")
    hub_url: str | None = Field(None, description="the regional hub, e.g. https://hub:8765")
    desk_id: str | None = Field(None, description="this desk's credential id at the hub")
    hub_key: Path | None = Field(None, description="this desk's private key for the hub")
    timezone: str = Field("Asia/Shanghai", description="the centre's zone: case-number days, "
                                                      "working-day deadlines, receipt times")
    browser_grace_seconds: float = Field(15.0, gt=0, le=600, description="a clerk's browser "
                                         "closed mid-call may come back this long; then the "
                                         "citizen goes back to the front of the queue")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def anchor_file(self) -> Path:
        return self.audit_anchor_file or self.files_dir / "audit-anchors.jsonl"

    @property
    def serves_tls(self) -> bool:
        """Clerks reach this desk over HTTPS (here, or at a proxy in front)."""
        return self.behind_tls or (self.tls_cert is not None and self.tls_key is not None)

    def files_key(self) -> bytes:
        text = os.environ.get(self.files_key_env)
        if not text:
            raise ConfigError(f"config error: {self.files_key_env} is not set (the key that "
                              "encrypts material files at rest)")
        try:
            return parse_key(text)
        except ValueError as exc:
            raise ConfigError(f"config error: {self.files_key_env}: {exc}") from None


class DeskSettings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    desk: DeskConfig = Field(default_factory=DeskConfig)


def load_desk_config(path: Path | None) -> DeskConfig:
    return load_config(DeskSettings, path).desk
