"""Test hosts for tests: see ``tongban.netns`` (the demo's ``--test-hosts`` uses it too)."""

from tongban.netns import TestHost, available, chromium_in, test_host

__all__ = ["TestHost", "available", "chromium_in", "test_host"]
