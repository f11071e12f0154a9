"""Working hours on the Chinese calendar, TURN credentials, the protocol's models, the CLI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from signaling import protocol as p
from signaling.directory import Centre, load_directory
from signaling.turn import turn_credentials
from tongban.errors import ConfigError

CST = ZoneInfo("Asia/Shanghai")


def _centre(**kw: object) -> Centre:
    return Centre(**{"code": "c", "name": "n", "province": "浙江", "site": "s",
                     "matters": ["m"], **kw})  # type: ignore[arg-type]


def test_sample_directory_loads() -> None:
    directory = load_directory()
    assert {c.code for c in directory.centres} == {"yongjia", "wujiang"}
    assert directory.matter("yb-ydjz-ba") is not None


def test_open_in_working_hours_closed_at_lunch_and_at_night() -> None:
    centre = _centre()
    assert centre.is_open(datetime(2026, 11, 26, 10, 0, tzinfo=CST))  # a Thursday
    assert not centre.is_open(datetime(2026, 11, 26, 12, 30, tzinfo=CST))
    assert centre.next_opening(datetime(2026, 11, 26, 12, 30, tzinfo=CST)) == \
        datetime(2026, 11, 26, 13, 30, tzinfo=CST)
    assert centre.next_opening(datetime(2026, 11, 26, 19, 0, tzinfo=CST)) == \
        datetime(2026, 11, 27, 8, 30, tzinfo=CST)


def test_public_holidays_and_make_up_working_days() -> None:
    centre = _centre()
    # National Day 2026: closed on a Thursday, open on the make-up Saturday after it
    assert not centre.is_open(datetime(2026, 10, 1, 10, 0, tzinfo=CST))
    assert centre.is_open(datetime(2026, 10, 10, 10, 0, tzinfo=CST))
    assert centre.next_opening(datetime(2026, 9, 30, 18, 0, tzinfo=CST)) == \
        datetime(2026, 10, 8, 8, 30, tzinfo=CST)
    plain = _centre(chinese_calendar=False)
    assert plain.is_open(datetime(2026, 10, 1, 10, 0, tzinfo=CST))


def test_own_closures_and_time_zones() -> None:
    centre = _centre(closed_days=["2026-11-26"])
    assert not centre.is_open(datetime(2026, 11, 26, 10, 0, tzinfo=CST))
    utc = datetime(2026, 11, 26, 2, 0, tzinfo=ZoneInfo("UTC"))  # 10:00 in Beijing
    assert _centre().is_open(utc)


def test_bad_hours_and_bad_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        _centre(hours={"mon": ["17:00-09:00"]})
    with pytest.raises(ValidationError):
        _centre(hours={"someday": ["09:00-10:00"]})
    bad = tmp_path / "d.toml"
    bad.write_text('[[matters]]\ncode = "m"\nname = "x"\n[[centres]]\ncode = "c"\nname = "n"\n'
                   'province = "p"\nsite = "s"\nmatters = ["zz"]\n')
    with pytest.raises(ConfigError, match="unknown matters"):
        load_directory(bad)


def test_turn_credentials_follow_coturns_rest_scheme() -> None:
    user, password = turn_credentials("s3cret", "kiosk-7", ttl=600, now=1_000_000)
    assert user == "1000600:kiosk-7"
    assert password == base64.b64encode(
        hmac.new(b"s3cret", user.encode(), hashlib.sha1).digest()).decode()


def test_models_refuse_unknown_fields_and_other_versions() -> None:
    with pytest.raises(ValidationError):
        p.TicketRequest.model_validate({"v": 1, "centre": "c", "matter": "m",
                                        "case_id": "case-0001", "x": 1})
    with pytest.raises(ValidationError):
        p.TicketRequest.model_validate({"v": 2, "centre": "c", "matter": "m",
                                        "case_id": "case-0001"})
    with pytest.raises(ValidationError):
        p.TicketTransfer(ticket_id="abcdefgh", clerk_id="aa")  # names no target
    assert set(p.INBOUND) == p.KIOSK_EVENTS | p.DESK_EVENTS


def test_credentials_cli(tmp_path: Path) -> None:
    creds = tmp_path / "creds.json"
    base = [sys.executable, "-m", "tongban", "signaling", "credentials"]
    created = subprocess.run([*base, "create", "--kind", "desk", "--id", "yongjia-desk",
                              "--centre", "yongjia", "--key-out", str(tmp_path / "d.key"),
                              "--file", str(creds), "--json"], capture_output=True, text=True,
                             check=False)
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "d.key").stat().st_mode & 0o777 == 0o600
    again = subprocess.run([*base, "create", "--kind", "desk", "--id", "yongjia-desk",
                            "--centre", "yongjia", "--key-out", str(tmp_path / "e.key"),
                            "--file", str(creds)], capture_output=True, text=True, check=False)
    assert again.returncode == 2 and "revoke it first" in again.stderr
    subprocess.run([*base, "revoke", "--id", "yongjia-desk", "--file", str(creds)], check=True,
                   capture_output=True)
    listed = subprocess.run([*base, "list", "--json", "--file", str(creds)],
                            capture_output=True, text=True, check=True)
    entry = json.loads(listed.stdout)[0]
    assert entry["id"] == "yongjia-desk" and entry["revoked_at"] is not None
    assert "public_key" not in entry
    token = subprocess.run([sys.executable, "-m", "tongban", "signaling", "token", "--id",
                            "yongjia-desk", "--kind", "desk", "--key", str(tmp_path / "d.key")],
                           capture_output=True, text=True, check=True)
    assert token.stdout.count(".") == 1
