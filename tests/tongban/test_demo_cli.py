"""``tongban demo`` (what `make demo` runs): hub, desk and kiosk come up with simulated devices,
print their URLs, answer there, and stop cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_starts_hub_desk_and_kiosk_and_prints_the_urls() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tongban", "demo", "--seconds", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        urls: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while len(urls) < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            for label in ("kiosk touch screen", "clerk desk", "hub"):
                if line.strip().startswith(label):
                    urls[label] = line.split()[len(label.split())]
        assert set(urls) == {"kiosk touch screen", "clerk desk", "hub"}, urls
        with urllib.request.urlopen(urls["kiosk touch screen"] + "api/screen", timeout=5) as r:
            screen = json.loads(r.read())
        assert screen["state"] == "idle" and screen["simulated"] is True
        with urllib.request.urlopen(urls["clerk desk"] + "healthz", timeout=5) as r:
            assert json.loads(r.read())["ok"] is True
        with urllib.request.urlopen(urls["hub"], timeout=5) as r:
            health = json.loads(r.read())
        assert health["connected"] == {"kiosk": 1, "desk": 1}
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
