"""Printing command results: JSON (one document or one line per record) or human text."""

from __future__ import annotations

import json
from typing import Any

import click


def to_json_text(data: Any, *, line: bool = False) -> str:
    """Serialise data as JSON: indented for one document, compact for a line of a stream."""
    return json.dumps(data, ensure_ascii=False, default=str, indent=None if line else 2)


def emit(data: Any, *, as_json: bool, line: bool = False) -> None:
    """Print data as JSON when asked (human commands print their own text otherwise)."""
    if as_json:
        click.echo(to_json_text(data, line=line))
