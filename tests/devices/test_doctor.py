"""``tongban devices doctor`` against simulated devices, local servers and a STUN responder."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import sys
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from devices.doctor import stun_binding
from devices.idcard.cards import load_card
from devices.idcard.simulator import VirtualReader


class StunResponder(asyncio.DatagramProtocol):
    """Answers STUN binding requests with a binding success (enough for a liveness check)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) >= 20 and data[:2] == b"\x00\x01":
            response = struct.pack("!HHI", 0x0101, 0, 0x2112A442) + data[8:20]
            self.transport.sendto(response, addr)  # type: ignore[attr-defined]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_stun_binding_round_trip() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(StunResponder,
                                                       local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        assert await stun_binding("127.0.0.1", port) < 1000
    finally:
        transport.close()


async def test_doctor_reports_each_dependency_and_fails_on_a_dead_stun_server(
        tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    stun, _ = await loop.create_datagram_endpoint(StunResponder, local_addr=("127.0.0.1", 0))
    stun_port = stun.get_extra_info("sockname")[1]
    async def healthz(request: web.Request) -> web.Response:
        del request
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    sim = VirtualReader(load_card("resident"), link=tmp_path / "ttyIDCARD")
    sim.start()
    config = tmp_path / "kiosk.toml"
    config.write_text(f"""
[idcard]
port = "{tmp_path / 'ttyIDCARD'}"
[scanner.camera]
source = "sim"
capture_size = [1440, 1080]
[face.camera]
source = "sim"
[kiosk]
hub_url = "{url}"
desk_url = "{url}"
desks = {{ wujiang = "{url}" }}
stun = ["stun:127.0.0.1:{stun_port}"]
turn = ["turn:127.0.0.1:{_free_udp_port()}"]
spool_dir = "{tmp_path / 'spool'}"
""")
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tongban", "devices", "doctor", "--config", str(config),
            "--json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        sim.stop()
        stun.close()
        await server.close()
    checks = {c["check"]: c for c in json.loads(stdout)}
    assert proc.returncode == 1, stderr
    assert stderr.decode().strip() == "error: failed: ice turn"
    assert checks["idcard"]["verdict"] == "ok" and "SAM" in checks["idcard"]["detail"]
    assert checks["scanner"]["verdict"] == "ok" and "SIMULATED" in checks["scanner"]["detail"]
    assert checks["face_camera"]["verdict"] == "ok"
    assert checks["hub"]["verdict"] == "ok" and checks["desk"]["verdict"] == "ok"
    assert checks["desk wujiang"]["verdict"] == "ok"  # every destination centre's desk
    assert checks["ice stun"]["verdict"] == "ok"
    assert checks["ice turn"]["verdict"] == "fail" and "5 s" in checks["ice turn"]["detail"]
    assert checks["clock"]["verdict"] == "ok"
    assert checks["disk"]["verdict"] in ("ok", "warn")


async def test_doctor_without_configuration_skips_rather_than_fails(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tongban", "devices", "doctor", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path)
    stdout, _ = await asyncio.wait_for(proc.communicate(), 60)
    checks = json.loads(stdout)
    assert proc.returncode == 0
    assert {c["verdict"] for c in checks if c["check"] != "disk"} == {"skip"}
