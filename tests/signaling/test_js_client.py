"""Interoperability with the official JavaScript client (npm ``socket.io-client``), installed
outside the Python tree in an ignored folder (.cache/js-client)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from signaling import protocol as p
from signaling.auth import make_token
from signaling.protocol import ClientKind

from .conftest import HubFixture

ROOT = Path(__file__).resolve().parents[2]
JS_DIR = ROOT / ".cache" / "js-client"

SCRIPT = r"""
const { io } = require("socket.io-client");
const [url, token, badToken] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const refused = io(url, { transports: ["websocket"], auth: { token: badToken },
                          reconnection: false });
refused.on("connect_error", (err) => {
  out({ refused: err.data });
  refused.close();
  const socket = io(url, { transports: ["websocket"], auth: { token }, reconnection: false });
  socket.on("connect_error", (e) => { out({ error: e.message, data: e.data }); process.exit(1); });
  socket.on("hub.welcome", (w) => {
    out({ welcome: w });
    socket.emit("ticket.request", { v: 1, centre: "c2", matter: "m1", case_id: "case-js-01" });
  });
  socket.on("ticket.update", (u) => { out({ update: u }); socket.close(); process.exit(0); });
  socket.on("service.closed", (c) => { out({ closed: c }); process.exit(2); });
});
setTimeout(() => { out({ error: "timeout" }); process.exit(3); }, 15000);
"""


def _install() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the JavaScript interop test needs them")
    if not (JS_DIR / "node_modules" / "socket.io-client").is_dir():
        JS_DIR.mkdir(parents=True, exist_ok=True)
        (JS_DIR / "package.json").write_text('{"name": "tongban-js-interop", "private": true}')
        result = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", "socket.io-client@4"],
            cwd=JS_DIR, capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            pytest.skip(f"npm could not install socket.io-client: {result.stderr[-300:]}")
    script = JS_DIR / "interop.js"
    script.write_text(SCRIPT)
    return script


async def test_official_js_client_connects_authenticates_and_requests(hub: HubFixture) -> None:
    script = _install()
    desk = await hub.desk()
    await desk.send("clerk.presence", p.ClerkPresence(clerk_id="clerk-a", centre="c2",
                                                      matters=["m1"], available=True))
    key = hub.register("k-js", ClientKind.KIOSK, site="s1")
    token = make_token(key, "k-js", ClientKind.KIOSK)
    forged = make_token(hub.register("k-other", ClientKind.KIOSK, site="s1"), "k-js",
                        ClientKind.KIOSK)
    proc = await asyncio.create_subprocess_exec(
        "node", str(script), hub.url, token, forged, cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_PATH": str(JS_DIR / "node_modules")})
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, (stdout, stderr)
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    assert lines[0]["refused"]["code"] == "bad_signature"
    assert lines[1]["welcome"]["client_id"] == "k-js" and lines[1]["welcome"]["resumed"] is False
    update = lines[2]["update"]
    assert update["state"] == "waiting" and update["position"] == 1
    assert update["case_id"] == "case-js-01"
