"""Test hosts in network namespaces (../shared/design/TESTING.md): a veth pair with the host
side in the root namespace and the other side inside a fresh namespace, deleted afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TestHost:
    namespace: str
    host_ip: str
    """The root namespace's side: servers listen here."""
    guest_ip: str
    """The test host's address."""
    host_if: str = ""
    """The root namespace's end of the veth pair (``ip link set ... down`` cuts the host off)."""

    def set_link(self, up: bool) -> None:
        """Cut the test host off the network, or connect it again."""
        _ip("link", "set", self.host_if, "up" if up else "down")
        if up:  # the address comes back with the link; the route with it
            subprocess.run(["ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_if],
                           capture_output=True, check=False)


def available() -> str | None:
    """None if test hosts can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextmanager
def test_host(tag: str, number: int | None = None) -> Iterator[TestHost]:
    """One test host, named after ``tag`` and this process (or ``number``: 20-250)."""
    n = os.getpid() % 200 + 20 if number is None else number
    ns, host_if, guest_if = f"tb{tag}{n}", f"tbh{tag}{n}"[:15], f"tbg{tag}{n}"[:15]
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", guest_if)
        _ip("link", "set", guest_if, "netns", ns)
        _ip("addr", "add", f"10.77.{n}.1/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", ns, "ip", "addr", "add", f"10.77.{n}.2/24", "dev", guest_if)
        _ip("netns", "exec", ns, "ip", "link", "set", guest_if, "up")
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield TestHost(ns, f"10.77.{n}.1", f"10.77.{n}.2", host_if)
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def chromium_in(host: TestHost, folder: Path) -> Path:
    """A wrapper that starts Debian's Chromium inside the test host (for Playwright)."""
    wrapper = folder / f"chromium-{host.namespace}"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {host.namespace} /usr/bin/chromium "$@"\n')
    wrapper.chmod(0o755)
    return wrapper
