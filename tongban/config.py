"""Configuration: one TOML file per deployed component, environment overrides, validated at start.

An override is ``TONGBAN_<SECTION>__<KEY>[__<KEY>...]=value``, e.g.
``TONGBAN_IDCARD__PORT=/dev/ttyUSB0`` or ``TONGBAN_IDCARD__TIMEOUTS__READ=2.5``; the value is
read as a TOML value where it parses as one (numbers, booleans, arrays), else as a string.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tongban.errors import ConfigError

ENV_PREFIX = "TONGBAN_"
M = TypeVar("M", bound=BaseModel)


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def env_overrides(env: Mapping[str, str], prefix: str = ENV_PREFIX) -> dict[str, Any]:
    """Nested dict of the overrides found in ``env``."""
    out: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(prefix) or "__" not in key:
            continue
        path = [part.lower() for part in key[len(prefix):].split("__")]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config error: {key} overrides a value with a table")
        node[path[-1]] = _parse_env_value(raw)
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; any failure is a ``ConfigError`` naming the file."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config error: file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config error: cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config error: {path} is not valid TOML: {exc}") from None


def validate(model: type[M], data: Mapping[str, Any], source: str) -> M:
    """Validate ``data``; an error names the first bad key and where it came from."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"config error in {source}: {key}: {first['msg']}{more}") from None


def load_data_file(model: type[M], path: Path) -> M:
    """A data file (directory, catalogue): read and validated, without environment overrides."""
    return validate(model, read_toml(path), str(path))


def load_config(model: type[M], path: Path | None = None, *,
                env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> M:
    """Read ``path`` (if any), apply environment then explicit overrides, validate."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        data = read_toml(path)
    from_env = env_overrides(os.environ if env is None else env)
    if from_env:
        source += " with TONGBAN_* environment overrides"
    data = _merge(data, from_env)
    if overrides:
        data = _merge(data, overrides)
    return validate(model, data, source)
