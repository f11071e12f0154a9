"""Errors that end a command with one line on stderr and a chosen exit code."""

from __future__ import annotations


class TongbanError(Exception):
    """Base for errors the CLI reports as one line (anything with ``exit_code`` works too)."""

    exit_code = 1
    kind = "error"


class ConfigError(TongbanError):
    """A configuration file or override that does not validate; the message names the key."""

    exit_code = 3
    kind = "config_error"
