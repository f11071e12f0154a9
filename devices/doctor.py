"""``tongban devices doctor``: one verdict per line for everything a kiosk depends on.

Every configured device (the ID card reader answers and its SAM passes its self-test; each
camera gives a frame), the hub and the desk (``/healthz``), each STUN/TURN server (a STUN
binding request: an unreachable server costs aiortc 5 s on every call), the clock (against the
hub's and desk's Date headers: tokens and TURN credentials expire), and the disk that holds the
spool. It reads a kiosk's config file; sections it does not know are ignored.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import struct
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from devices.camera import CameraConfig
from devices.idcard.reader import ReaderConfig

Verdict = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str
    ms: float

    def to_json(self) -> dict[str, object]:
        return {"check": self.name, "verdict": self.verdict, "detail": self.detail,
                "ms": round(self.ms, 1)}


class NetworkConfig(BaseModel):
    """``[kiosk]`` keys the doctor checks."""

    model_config = ConfigDict(extra="ignore")

    hub_url: str | None = Field(None, description="the regional hub, e.g. https://hub:8765")
    desk_url: str | None = Field(None, description="the desk receiving packages (default)")
    desks: dict[str, str] = Field(default_factory=dict,
                                  description="per destination centre, its desk's URL")
    stun: list[str] = Field(default_factory=list, description="stun:host:port")
    turn: list[str] = Field(default_factory=list, description="turn:host:port")
    spool_dir: Path = Field(Path("spool"), description="encrypted packages awaiting delivery")


class FaceSection(BaseModel):
    model_config = ConfigDict(extra="ignore")

    camera: CameraConfig | None = None


class ScannerSection(BaseModel):
    model_config = ConfigDict(extra="ignore")

    camera: CameraConfig | None = None


class DoctorConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    idcard: ReaderConfig | None = None
    scanner: ScannerSection | None = None
    face: FaceSection | None = None
    kiosk: NetworkConfig = Field(default_factory=NetworkConfig)


async def _timed(name: str, coro: Coroutine[Any, Any, tuple[Verdict, str]]) -> Check:
    started = time.perf_counter()
    verdict: Verdict
    detail: str
    try:
        verdict, detail = await asyncio.wait_for(coro, 15)
    except TimeoutError:
        verdict, detail = "fail", "no answer within 15 s"
    except Exception as exc:  # a check reports, it never crashes the doctor
        verdict, detail = "fail", f"{type(exc).__name__}: {str(exc)[:160]}"
    return Check(name, verdict, detail, (time.perf_counter() - started) * 1000)


async def check_idcard(config: ReaderConfig) -> tuple[Verdict, str]:
    from devices.idcard.reader import IdCardReader

    async with IdCardReader(config, decoder_from_config=False) as reader:
        await reader.sam_status()
        sam = await reader.sam_id()
    return "ok", f"{config.port} at {config.baud} baud, SAM {sam}"


async def check_camera(config: CameraConfig, kind: str) -> tuple[Verdict, str]:
    from devices.camera import Camera

    def grab() -> tuple[Verdict, str]:
        if kind == "face":
            from devices.facecam import FaceCamera as Cam
        else:
            from devices.scanner.camera import DocumentCamera as Cam  # type: ignore[assignment]
        camera: Camera = Cam(config)
        with camera:
            frame = camera.latest(timeout=5)
            label = " (SIMULATED)" if camera.simulated else ""
            h, w = frame.image.shape[:2]
        return "ok", f"{config.source}: {w}x{h}{label}"

    return await asyncio.to_thread(grab)


async def check_http(url: str) -> tuple[Verdict, str, float | None]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, \
            session.get(url.rstrip("/") + "/healthz") as r:
        skew = None
        if "Date" in r.headers:
            skew = parsedate_to_datetime(r.headers["Date"]).timestamp() - time.time()
        if r.status != 200:
            return "fail", f"{url}: /healthz answered {r.status}", skew
        return "ok", f"{url}: healthy", skew


async def stun_binding(host: str, port: int, timeout: float = 2.0) -> float:
    """Round-trip milliseconds of a STUN binding request (RFC 5389)."""
    loop = asyncio.get_running_loop()
    transaction = secrets.token_bytes(12)
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + transaction
    answered: asyncio.Future[float] = loop.create_future()
    started = time.perf_counter()

    class Protocol(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            if len(data) >= 20 and data[8:20] == transaction and not answered.done():
                answered.set_result((time.perf_counter() - started) * 1000)

        def error_received(self, exc: Exception) -> None:
            if not answered.done():
                answered.set_exception(exc)

    transport, _ = await loop.create_datagram_endpoint(Protocol, remote_addr=(host, port))
    try:
        for _ in range(3):  # UDP: a few tries within the timeout
            transport.sendto(request)
            try:
                return await asyncio.wait_for(asyncio.shield(answered), timeout / 3)
            except TimeoutError:
                continue
        raise TimeoutError(f"no STUN answer from {host}:{port} within {timeout:.0f} s")
    finally:
        transport.close()


async def check_ice_server(uri: str) -> tuple[Verdict, str]:
    _, _, rest = uri.partition(":")
    host, _, port = rest.split("?")[0].rpartition(":")
    if not host:
        host, port = rest.split("?")[0], "3478"
    try:
        ms = await stun_binding(host.strip("[]"), int(port))
    except (TimeoutError, OSError) as exc:
        return "fail", (f"{uri}: {exc}; aiortc would spend 5 s on it at every call: fix or "
                        "remove it")
    return "ok", f"{uri}: answered in {ms:.1f} ms"


def check_disk(spool_dir: Path) -> tuple[Verdict, str]:
    target = spool_dir if spool_dir.exists() else spool_dir.resolve().parent
    while not target.exists():
        target = target.parent
    free = shutil.disk_usage(target).free
    gb = free / 1e9
    if free < 100e6:
        return "fail", f"{target}: {gb:.2f} GB free (packages cannot be spooled)"
    if free < 1e9:
        return "warn", f"{target}: {gb:.2f} GB free"
    return "ok", f"{target}: {gb:.1f} GB free"


async def run_checks(config: DoctorConfig) -> list[Check]:
    checks: list[Check] = []
    if config.idcard and config.idcard.port:
        checks.append(await _timed("idcard", check_idcard(config.idcard)))
    else:
        checks.append(Check("idcard", "skip", "no [idcard] port configured", 0))
    for name, section in (("scanner", config.scanner), ("face_camera", config.face)):
        camera = section.camera if section else None
        if camera is None:
            checks.append(Check(name, "skip", f"no [{name.split('_')[0]}.camera] configured",
                                0))
        else:
            kind = "face" if name == "face_camera" else "scanner"
            checks.append(await _timed(name, check_camera(camera, kind)))
    net = config.kiosk
    skews: list[float] = []
    servers = [("hub", net.hub_url), ("desk", net.desk_url),
               *((f"desk {centre}", url) for centre, url in net.desks.items())]
    for name, url in servers:
        if not url:
            checks.append(Check(name, "skip", f"no kiosk.{name}_url configured", 0))
            continue

        async def http(target: str = url) -> tuple[Verdict, str]:
            verdict, detail, skew = await check_http(target)
            if skew is not None:
                skews.append(skew)
            return verdict, detail

        checks.append(await _timed(name, http()))
    for uri in [*net.stun, *net.turn]:
        checks.append(await _timed(f"ice {urlparse(uri).scheme or uri.split(':')[0]}",
                                   check_ice_server(uri)))
    if skews:
        worst = max(skews, key=abs)
        verdict: Verdict = "ok" if abs(worst) < 5 else "warn" if abs(worst) < 30 else "fail"
        checks.append(Check("clock", verdict, f"{worst:+.1f} s against the servers "
                                              "(tokens live 120 s)", 0))
    else:
        checks.append(Check("clock", "skip", "no server to compare with", 0))
    started = time.perf_counter()
    disk_verdict, disk_detail = check_disk(net.spool_dir)
    checks.append(Check("disk", disk_verdict, disk_detail, (time.perf_counter() - started) * 1e3))
    return checks


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.verdict == "fail" for c in checks) else 0


__all__ = ["Check", "DoctorConfig", "exit_code", "run_checks", "stun_binding"]
