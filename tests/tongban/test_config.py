"""Configuration files, environment overrides and validation errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.config import DevicesConfig
from tongban.config import env_overrides, load_config
from tongban.errors import ConfigError


def test_defaults_need_no_file() -> None:
    config = load_config(DevicesConfig, env={})
    assert config.idcard.baud == 115200 and config.idcard.port is None


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[idcard]\nport = "/dev/a"\nretries = 2\n[idcard.timeouts]\nread = 1.5\n')
    config = load_config(DevicesConfig, path, env={"TONGBAN_IDCARD__PORT": "/dev/b",
                                                   "TONGBAN_IDCARD__TIMEOUTS__FIND": "0.3"},
                         overrides={"idcard": {"retries": 0}})
    assert config.idcard.port == "/dev/b"
    assert config.idcard.timeouts.read == 1.5
    assert config.idcard.timeouts.find == 0.3
    assert config.idcard.retries == 0


def test_env_values_are_toml_typed() -> None:
    assert env_overrides({"TONGBAN_A__B": "3", "TONGBAN_A__C": "true", "TONGBAN_A__D": "x y",
                          "OTHER": "1"}) == {"a": {"b": 3, "c": True, "d": "x y"}}


@pytest.mark.parametrize(("text", "key"), [
    ('[idcard]\nbaud = 1000\n', "idcard.baud"),
    ('[idcard]\nretries = -1\n', "idcard.retries"),
    ('[idcard.timeouts]\nread = 0\n', "idcard.timeouts.read"),
    ('[idcard]\nport_name = "x"\n', "idcard.port_name"),
    ('[idcard.photo_decoder]\nkind = "magic"\n', "idcard.photo_decoder.kind"),
])
def test_errors_name_the_bad_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(DevicesConfig, path, env={})


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(DevicesConfig, tmp_path / "missing.toml", env={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[idcard\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(DevicesConfig, broken, env={})
