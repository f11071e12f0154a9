"""The directory the hub routes by: service centres (code, name, province, desk endpoint,
working hours, holidays, routing mode), the matters each handles, and the kiosk sites with
their STUN/TURN servers. Working days follow the Chinese calendar with its make-up working
days (chinese-calendar), plus each centre's own closures.
"""

from __future__ import annotations

import os
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tongban.config import load_data_file
from tongban.errors import ConfigError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_DIRECTORY = Path(__file__).parent / "data" / "directory.toml"


class Matter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    name: str
    avg_service_minutes: float = Field(8.0, gt=0, le=240)


class Site(BaseModel):
    """A place with kiosks (or a centre's network): its ICE servers."""

    model_config = ConfigDict(extra="forbid")

    code: str
    name: str = ""
    stun: list[str] = Field(default_factory=list)
    turn: list[str] = Field(default_factory=list)
    turn_secret_env: str | None = Field(None, description="environment variable holding the "
                                                          "coturn static-auth-secret")
    turn_ttl: int = Field(3600, ge=60, le=86400)

    def turn_secret(self) -> str | None:
        return os.environ.get(self.turn_secret_env) if self.turn_secret_env else None


class Centre(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    name: str
    province: str
    desk_endpoint: str = ""
    site: str = Field(description="the site whose ICE servers the centre's clerks use")
    routing: Literal["auto", "pick"] = "auto"
    timezone: str = "Asia/Shanghai"
    hours: dict[str, list[str]] = Field(
        default_factory=lambda: {d: ["08:30-12:00", "13:30-17:30"] for d in WEEKDAYS[:5]})
    chinese_calendar: bool = Field(True, description="closed on public holidays, open on "
                                                     "make-up working days")
    closed_days: list[date] = Field(default_factory=list)
    open_days: list[date] = Field(default_factory=list)
    matters: list[str]

    @field_validator("hours")
    @classmethod
    def _check_hours(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, spans in value.items():
            if day not in WEEKDAYS:
                raise ValueError(f"unknown weekday {day!r} (use {', '.join(WEEKDAYS)})")
            for span in spans:
                _parse_span(span)
        return value

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        ZoneInfo(value)
        return value

    def _calendar(self, day: date) -> tuple[bool, bool]:
        """(public holiday, make-up working day) by the Chinese calendar."""
        if not self.chinese_calendar:
            return False, False
        try:
            import chinese_calendar

            on_holiday, name = chinese_calendar.get_holiday_detail(day)
            workday = bool(chinese_calendar.is_workday(day))
        except NotImplementedError:  # a year the package does not know yet
            return False, False
        return bool(on_holiday and name is not None), workday and day.weekday() >= 5

    def _spans(self, day: date) -> list[tuple[datetime, datetime]]:
        zone = ZoneInfo(self.timezone)
        key = WEEKDAYS[day.weekday()]
        spans = self.hours.get(key, [])
        holiday, makeup = self._calendar(day)
        if day in self.closed_days or (holiday and day not in self.open_days):
            return []
        if (makeup or day in self.open_days) and not spans:
            spans = self.hours.get("mon", [])  # a make-up working day keeps Monday's hours
        out = []
        for span in spans:
            start, end = _parse_span(span)
            begin = datetime.combine(day, start, zone)
            finish = (datetime.combine(day + timedelta(days=1), time(0), zone) if end is None
                      else datetime.combine(day, end, zone))
            out.append((begin, finish))
        return out

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.timezone))
        return any(a <= local < b for a, b in self._spans(local.date()))

    def next_opening(self, now: datetime) -> datetime | None:
        """When the centre opens next (None if not within 60 days)."""
        local = now.astimezone(ZoneInfo(self.timezone))
        for offset in range(61):
            for start, end in self._spans(local.date() + timedelta(days=offset)):
                if local < start:
                    return start
                if start <= local < end:
                    return local
        return None


def _parse_span(span: str) -> tuple[time, time | None]:
    try:
        a, b = span.split("-")
        start = time.fromisoformat(a.strip())
        end = None if b.strip() == "24:00" else time.fromisoformat(b.strip())
    except ValueError:
        raise ValueError(f"hours {span!r} are not HH:MM-HH:MM") from None
    if end is not None and end <= start:
        raise ValueError(f"hours {span!r} end before they start")
    return start, end


class Directory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    centres: list[Centre]
    matters: list[Matter]
    sites: list[Site] = Field(default_factory=list)

    def centre(self, code: str) -> Centre | None:
        return next((c for c in self.centres if c.code == code), None)

    def matter(self, code: str) -> Matter | None:
        return next((m for m in self.matters if m.code == code), None)

    def site(self, code: str | None) -> Site | None:
        return next((s for s in self.sites if s.code == code), None)


def load_directory(path: Path | None = None) -> Directory:
    """Read and validate a directory file (the sample one by default)."""
    path = path or DEFAULT_DIRECTORY
    directory = load_data_file(Directory, path)
    known = {m.code for m in directory.matters}
    for centre in directory.centres:
        unknown = set(centre.matters) - known
        if unknown:
            raise ConfigError(f"config error in {path}: centre {centre.code} handles unknown "
                              f"matters {sorted(unknown)}")
    return directory
