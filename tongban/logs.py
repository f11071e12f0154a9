"""Structured logs (structlog over the standard library) that never carry personal data.

Components log events with keys, never card text; as a second line of defence the
``redact_personal`` processor drops values under personal keys and masks anything shaped like
an 18-character ID number, in the event text as well as in values.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import IO, Any

import structlog

PERSONAL_KEYS = frozenset({
    "name", "id_number", "address", "birth_date", "photo", "fingerprint", "english_name",
    "chinese_name", "permanent_residence_number", "travel_permit_number", "card",
})
_ID_LIKE = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![0-9A-Za-z])")


def _mask_text(text: str) -> str:
    return _ID_LIKE.sub(lambda m: m.group(1) + "********" + m.group(2), text)


def redact_personal(_logger: Any, _method: str,
                    event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: redact personal keys, mask ID-number-shaped text."""
    for key in list(event):
        value = event[key]
        if key in PERSONAL_KEYS:
            event[key] = "[redacted]"
        elif isinstance(value, str):
            event[key] = _mask_text(value)
    return event


def configure(level: str = "warning", *, json: bool = False, stream: IO[str] | None = None) -> None:
    """Route structlog through the standard library to ``stream`` (stderr by default)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_personal,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    renderer: Any = (structlog.processors.JSONRenderer(ensure_ascii=False) if json
                     else structlog.dev.ConsoleRenderer(colors=False))
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=shared,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.setLevel(level.upper())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    global _shared  # noqa: PLW0603 - the processors a file handler added later reuses
    _shared = shared


_shared: list[Any] = []


def add_file(path: Any, level: str = "info") -> logging.Handler:
    """Also write JSON lines at ``level`` to ``path`` (the demo keeps every log it wrote)."""
    if not _shared:
        configure()
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer(ensure_ascii=False)],
        foreign_pre_chain=_shared)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(formatter)
    handler.setLevel(level.upper())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.level, handler.level))
    return handler
