"""What quality gates have in common: a verdict that lists the failed gates and says the first
one to the citizen in one short sentence (Chinese first, English for technicians)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class GateVerdict:
    """Mixin for a dataclass with a ``failed`` list of gates and a ``MESSAGES`` table."""

    failed: list[Any]
    MESSAGES: ClassVar[Mapping[Any, tuple[str, str]]] = {}

    @property
    def ok(self) -> bool:
        return not self.failed

    def message(self, language: str = "zh") -> str | None:
        """The sentence for the first failed gate, or None when every gate passed."""
        if not self.failed:
            return None
        zh, en = self.MESSAGES[self.failed[0]]
        return zh if language == "zh" else en
