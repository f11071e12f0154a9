"""A day's load: a simulated morning at one centre, every case a whole case (issue 11).

Twenty SIMULATED kiosks at several sites and four headless clerks (``remote_desk/headless.py``,
stand-ins for the desk page) go through the real services on loopback: two hub processes
sharing state over Redis (``tongban signaling serve``; kiosks alternate between them, the
desk is on the second), one desk process on a PostgreSQL database created for this run and
dropped after it (``tongban desk serve``). Each citizen: ticket request, waiting (every
``ticket.update`` read with ``signaling.protocol.TicketUpdate`` and kept with its time),
offered and accepted by a clerk, a real aiortc call with media both ways, the signed case
package (``kiosk.package.build_package``, ``kiosk.spool``) delivered to the desk over HTTP,
the clerk's decision through the desk API, the call ended as completed.

The kiosks are SIMULATED and lightweight: no ``KioskService``, no device simulators (twenty
rendering cameras would saturate two cores), but the product's own modules: ``HubClient``, the
protocol models, ``CallPeer`` sending a ``tongban.rtc`` synthetic track (320x240 at the face
camera's 15 fps) and tone, ``build_package``, ``Spool`` and ``deliver``; pages are synthetic
JPEGs labelled SIMULATED. The kiosks run in this process, the clerks in a child process of
their own (with a camera as light as the kiosk's): both are load generators, each measured
with its event-loop lag so that a starved generator shows.

Arrivals are a Poisson process conditioned on the count (sorted uniform times over the
morning, seeded); each case's service time (call start to decision) is drawn, seeded, from a
gamma distribution around the matter's ``avg_service_minutes``, set small in the bench
directory (one centre, routing "auto", open around the clock).

    uv run python bench/day.py [--kiosks 20] [--clerks 4] [--morning-seconds 75]
                               [--avg-service-minutes 0.4] [--seed 1] [--max-seconds 600]
                               [--json] [--keep-logs DIR]

Reported: cases completed, lost and duplicated (exit 1 if any was lost or duplicated); each
citizen's actual wait (ticket request -> call.start at the kiosk) against the expected wait
shown at their first update while waiting, and the error over every update (relative errors
where at least --relative-floor-s of wait was left); the clerk's accept -> first decoded frame
(p50, p95) and its phases, unless messages or frames were lost (then that, loudly, instead;
a low frame rate with no packet lost is flagged as an overloaded sender, not suppressed);
media per call (fps, packets lost); package delivery; decision latency and failures (never
retried); hub and desk processes' CPU seconds and peak RSS (each its own process, from /proc);
the audit chain; the code that ran (commit, uncommitted product files).
Goals: all cases completed; median relative error of the first expected wait < 25 %.
Needs PostgreSQL (TONGBAN_BENCH_PG, default postgresql://postgres@127.0.0.1:5432/test) and
Redis (TONGBAN_BENCH_REDIS, default redis://127.0.0.1:6379; a free database among 12-15 is
claimed and flushed after). Traffic stays on 127.0.0.1: ICE offers only the loopback address
and no STUN server is configured (every peer uses only the servers ``call.start`` names).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import cv2
import numpy as np

from kiosk.call import CallPeer
from kiosk.package import CapturedFile, build_package, identity_document
from kiosk.spool import DeliveryRefused, Spool, deliver
from remote_desk.headless import HeadlessClerk
from signaling import protocol as p
from signaling.client import HubClient
from signaling.directory import Centre, Directory, Matter, Site
from tongban import logs
from tongban.machine import machine
from tongban.rtc import IncomingMedia, synthetic_video, tone

CENTRE = "c1"
MATTER = "m1"
HOST = "127.0.0.1"
PG_ADMIN = os.environ.get("TONGBAN_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_BASE = os.environ.get("TONGBAN_BENCH_REDIS", "redis://127.0.0.1:6379").rstrip("/")
REDIS_DBS = (12, 13, 14, 15)
WAITING = (p.TicketState.WAITING, p.TicketState.OFFERED)
M = TypeVar("M", bound=p.Message)


# -- the plan ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """The seeded morning: when each citizen arrives and how long their case takes."""

    arrivals_s: list[float]
    """Seconds after the morning starts, sorted."""
    service_s: list[float]
    """Call start -> decision, per arrival."""


def plan(args: argparse.Namespace) -> Plan:
    rng = random.Random(args.seed)
    arrivals = sorted(rng.uniform(0, args.morning_seconds) for _ in range(args.kiosks))
    mean = args.avg_service_minutes * 60
    shape = 9.0  # coefficient of variation 1/3
    service = [min(3 * mean, max(mean / 3, rng.gammavariate(shape, mean / shape)))
               for _ in range(args.kiosks)]
    return Plan([round(a, 3) for a in arrivals], [round(s, 3) for s in service])


def bench_directory(args: argparse.Namespace) -> Directory:
    """One centre (routing auto, open around the clock), one matter, the kiosks' sites."""
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    return Directory(
        matters=[Matter(code=MATTER, name="bench matter (SIMULATED morning)",
                        avg_service_minutes=args.avg_service_minutes)],
        sites=[Site(code=f"site{i + 1}", name=f"township {i + 1}") for i in range(args.sites)],
        centres=[Centre(code=CENTRE, name="bench centre", province="bench", site="site1",
                        routing="auto", chinese_calendar=False, matters=[MATTER],
                        hours={d: ["00:00-24:00"] for d in days})])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def directory_toml(directory: Directory) -> str:
    """The directory as the hub's --directory file (read back and compared by the caller)."""
    out: list[str] = []
    for table, items in (("matters", directory.matters), ("sites", directory.sites),
                         ("centres", directory.centres)):
        for item in items:
            data = item.model_dump(mode="json", exclude_defaults=True)
            out.append(f"[[{table}]]")
            nested = {k: v for k, v in data.items() if isinstance(v, dict)}
            out += [f"{k} = {_toml_value(v)}" for k, v in data.items() if k not in nested]
            for name, sub in nested.items():
                out.append(f"[{table}.{name}]")
                out += [f"{k} = {_toml_value(v)}" for k, v in sub.items()]
            out.append("")
    return "\n".join(out)


# -- processes: start, measure, stop --------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class ProcSample:
    cpu_s: float
    rss_mb: float
    hwm_mb: float


def proc_sample(pid: int) -> ProcSample | None:
    """CPU seconds (user + system) and resident memory of one process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        rss = hwm = 0.0
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return ProcSample((int(fields[11]) + int(fields[12])) / ticks, rss, hwm)


@dataclass
class Service:
    """One hub or desk process of this run."""

    name: str
    proc: Any
    """subprocess.Popen, or asyncio's Process for the clerks' worker."""
    url: str
    log: Path
    at_start: ProcSample | None = None
    at_end: ProcSample | None = None


class Services:
    """The hubs and the desk as separate processes (the project's CLI), so each is measured
    alone; their stderr (JSON logs at info level) goes to files in the run's folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.all: list[Service] = []

    async def start(self, name: str, args: list[str], port: int,
                    env: dict[str, str] | None = None) -> Service:
        log = self.folder / f"{name}.log"
        cmd = [sys.executable, "-m", "tongban", "-v", "--log-json", *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                stderr=open(log, "wb"),  # noqa: SIM115 - the child owns it
                                env={**os.environ, **(env or {})}, cwd=self.folder)
        service = Service(name, proc, f"http://{HOST}:{port}", log)
        self.all.append(service)
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited at start ({proc.returncode}); see {log}: "
                                       + log.read_text("utf-8", "replace")[-600:])
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(service.url + "/healthz") as r:
                        if r.status == 200:
                            return service
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{name} did not answer /healthz within 30 s; see {log}")

    def stop(self) -> None:
        for s in self.all:
            if s.proc.poll() is None:
                s.proc.send_signal(signal.SIGINT)
        for s in self.all:
            try:
                s.proc.wait(15)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait(5)


async def create_database(name: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


async def drop_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def claim_redis(max_seconds: float) -> tuple[str, Any]:
    """A Redis database of 12-15 that holds nothing, marked as ours for this run."""
    import redis.asyncio as aioredis

    for db in REDIS_DBS:
        client = aioredis.Redis.from_url(f"{REDIS_BASE}/{db}", socket_connect_timeout=2)
        if await client.dbsize() == 0 and await client.set(
                "tongban-bench-day:owner", str(os.getpid()), nx=True, ex=int(max_seconds) + 120):
            return f"{REDIS_BASE}/{db}", client
        await client.aclose()
    raise RuntimeError(f"no empty Redis database among {REDIS_DBS} at {REDIS_BASE} "
                       "(another bench running? flush a stale one by hand)")


def loopback_only() -> None:
    """ICE offers only 127.0.0.1 (this process only). No STUN server is asked: every peer
    (``tongban.rtc.peer_connection``) uses only the servers ``call.start`` names, none here."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [HOST]


def kiosk_camera(size: tuple[int, int], fps: int) -> Any:
    """The SIMULATED kiosk camera: ``tongban.rtc``'s synthetic track (paced at 30 fps) with
    every n-th frame sent, for the product cameras' rate (the face camera runs at 15)."""
    from aiortc.mediastreams import MediaStreamTrack

    every = max(1, round(30 / max(1, fps)))
    source = synthetic_video(size=size)

    class Camera(MediaStreamTrack):
        kind = "video"

        async def recv(self) -> Any:
            for _ in range(every - 1):
                await source.recv()
            return await source.recv()

        def stop(self) -> None:
            source.stop()
            super().stop()

    return Camera()


# -- the SIMULATED kiosk --------------------------------------------------------------------------

@dataclass
class Update:
    """One ticket.update as the citizen saw it."""

    t: float
    state: str
    position: int | None
    expected_wait_s: int | None


@dataclass
class Citizen:
    """One citizen's case as their (SIMULATED) kiosk lived it; times are time.monotonic()."""

    index: int
    kiosk_id: str
    hub: str
    site: str
    service_s: float
    case_id: str = ""
    requested_at: float | None = None
    updates: list[Update] = field(default_factory=list)
    call_starts: int = 0
    restarts: int = 0
    """Broken connections replaced by a new call (the product kiosk's rule, ``broken()``)."""
    call_started_at: float | None = None
    states: list[str] = field(default_factory=list)
    """The kiosk's peer connection states, with seconds since the call started."""
    offer_sent_at: float | None = None
    answer_at: float | None = None
    first_clerk_frame_at: float | None = None
    frames_from_clerk: int = 0
    video_window_s: float = 0.0
    """First frame from the clerk -> the call's end (the span the frames came in)."""
    audio_frames_from_clerk: int = 0
    packets_lost_at_kiosk: int = 0
    package: str | None = None
    package_bytes: int = 0
    package_s: float | None = None
    receipt: dict[str, Any] | None = None
    receipt_at: float | None = None
    ended: list[str] = field(default_factory=list)
    closed_reason: str | None = None
    closed_at: float | None = None
    service_closed: str | None = None
    hub_errors: list[str] = field(default_factory=list)
    disconnects: int = 0
    problems: list[str] = field(default_factory=list)


def synthetic_page(label: str, seed: int, size: tuple[int, int] = (1240, 1754)) -> bytes:
    """A SIMULATED scanned page (A4 at 150 dpi): text-like lines, a red seal, sensor noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    page = np.full((h, w, 3), 245, np.uint8)
    y = 120
    while y < h - 160:
        x = 100
        while x < w - 140:
            word = int(rng.integers(20, 110))
            cv2.rectangle(page, (x, y), (min(x + word, w - 100), y + 16), (40, 40, 40), -1)
            x += word + int(rng.integers(12, 24))
        y += int(rng.integers(34, 44))
    cv2.circle(page, (w - 300, h - 300), 110, (40, 40, 200), 8)
    cv2.putText(page, f"SIMULATED {label}", (100, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.4,
                (0, 0, 0), 3)
    noise = rng.normal(0, 3, page.shape)
    page = np.clip(page.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", page, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return bytes(buf)


def _as(model: type[M], data: Any) -> M:
    """``data`` as ``model``: as it came (already parsed) or validated now."""
    return data if isinstance(data, model) else model.model_validate(data)


class SimulatedKiosk:
    """A SIMULATED kiosk for one citizen: the product's hub client, protocol models, call peer
    (synthetic tracks), package signing, spool and delivery; no device simulators."""

    def __init__(self, citizen: Citizen, key: Any, hub_url: str, desk_url: str, spool: Path,
                 pages: list[bytes], video_size: tuple[int, int], fps: int) -> None:
        self.c = citizen
        self.key = key
        self.desk_url = desk_url
        self.pages = pages
        self.video_size = video_size
        self.fps = fps
        self.client = HubClient(hub_url, citizen.kiosk_id, p.ClientKind.KIOSK, key,
                                keep_queues=False)
        self.client.listener = self._on
        self.spool = Spool(spool)
        self.peer: CallPeer | None = None
        self.done = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._upload: asyncio.Task[None] | None = None
        self._closing = False

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def connect(self) -> None:
        await self.client.connect(timeout=15)

    async def arrive(self) -> None:
        """The citizen presses "remote service": the kiosk asks for a ticket."""
        self.c.case_id = self.c.case_id or secrets.token_urlsafe(12)
        self.c.requested_at = time.monotonic()
        await self.client.send("ticket.request", p.TicketRequest(
            centre=CENTRE, matter=MATTER, case_id=self.c.case_id))

    async def _on(self, event: str, data: Any) -> None:
        """Every hub event, read with its protocol model (``HubClient`` may have parsed it
        already; a dict is validated here)."""
        now = time.monotonic()
        c = self.c
        try:
            if event == "ticket.update":
                update = _as(p.TicketUpdate, data)
                if update.case_id != c.case_id:
                    c.problems.append("update for another case")
                    return
                c.updates.append(Update(now, update.state.value, update.position,
                                        update.expected_wait_s))
                if update.state is p.TicketState.CLOSED:
                    c.closed_reason = update.reason.value if update.reason else "?"
                    c.closed_at = now
                    self.done.set()
            elif event == "service.closed":
                c.service_closed = _as(p.ServiceClosed, data).reason
                self.done.set()
            elif event == "call.start":
                start = _as(p.CallStart, data)
                if start.case_id != c.case_id:
                    c.problems.append("call.start for another case")
                    return
                c.call_starts += 1
                if c.call_started_at is None:
                    c.call_started_at = now
                self._spawn(self._call(start))
                if self._upload is None:  # the product uploads when the call starts
                    self._upload = self._spawn(self._deliver())
                    self._spawn(self._watch())
            elif event == "call.answer":
                answer = _as(p.CallAnswer, data)
                c.answer_at = c.answer_at or now
                if self.peer is not None and answer.call_id == self.peer.call_id:
                    await self.peer.answer(answer.sdp)
            elif event == "call.ice":
                ice = _as(p.CallIce, data)
                if self.peer is not None and ice.call_id == self.peer.call_id:
                    await self.peer.add_candidate(ice.candidate, ice.sdp_mid,
                                                  ice.sdp_mline_index)
            elif event == "call.command":
                command = _as(p.CallCommand, data)
                if self.peer is None or command.call_id != self.peer.call_id:
                    c.problems.append(f"command {command.name} outside the call")
                    return
                if command.name in ("receipt", "end"):
                    c.receipt = {"name": command.name, **command.args}
                    c.receipt_at = now
                    await self.client.send("call.end", p.CallEnd(call_id=command.call_id,
                                                                 reason="completed"))
                    await self._close_peer()
            elif event == "call.ended":
                ended = _as(p.CallEnded, data)
                c.ended.append(str(ended.reason))
                if self.peer is not None and ended.call_id == self.peer.call_id:
                    await self._close_peer()
            elif event == "hub.error":
                error = _as(p.HubError, data)
                c.hub_errors.append(f"{error.event}:{error.code}")
            elif event == "hub.disconnected" and not self._closing:
                c.disconnects += 1
        except Exception as exc:  # a model that does not validate is a finding, not a crash
            c.problems.append(f"{event}: {type(exc).__name__}: {str(exc)[:160]}")

    async def _call(self, start: p.CallStart) -> None:
        await self._close_peer()
        self.peer = peer = CallPeer(start, [kiosk_camera(self.video_size, self.fps), tone()])
        began = time.monotonic()

        def state_changed() -> None:
            self.c.states.append(f"{peer.pc.connectionState}@{time.monotonic() - began:.2f}")

        peer.pc.on("connectionstatechange", state_changed)
        sdp = await peer.offer()
        if self.peer is peer:
            await self.client.send("call.offer", p.CallOffer(call_id=peer.call_id, sdp=sdp))
            self.c.offer_sent_at = self.c.offer_sent_at or time.monotonic()

    async def _watch(self) -> None:
        """The product kiosk's rule (its ticker, every second): a connection that failed, or
        whose media stopped, is replaced by a new call under the same ticket."""
        while not self.done.is_set():
            await asyncio.sleep(1.0)
            peer = self.peer
            if peer is not None and peer.broken() and self.client.connected:
                peer.restart_requested = True
                self.c.restarts += 1
                await self.client.send("call.restart", p.CallRestart(call_id=peer.call_id))

    async def _close_peer(self) -> None:
        peer, self.peer = self.peer, None
        if peer is None:
            return
        c = self.c
        if c.first_clerk_frame_at is None:
            c.first_clerk_frame_at = peer.incoming.first_video_at
        if peer.incoming.first_video_at is not None:
            c.video_window_s += time.monotonic() - peer.incoming.first_video_at
        c.frames_from_clerk += peer.incoming.video_frames
        c.audio_frames_from_clerk += peer.incoming.audio_frames
        with contextlib.suppress(Exception):
            report = await asyncio.wait_for(peer.pc.getStats(), 2)
            c.packets_lost_at_kiosk += sum(max(0, int(s.packetsLost)) for s in report.values()
                                           if getattr(s, "type", "") == "inbound-rtp")
        await peer.close()

    async def _deliver(self) -> None:
        c = self.c
        started = time.monotonic()
        identity = identity_document(
            {"card_type": "resident", "name": "SIMULATED", "id_number": "SIMULATED"},
            {"decision": "match", "simulated": True}, agent=False, simulated=True)
        files = [CapturedFile("identity.json", identity, "application/json"),
                 *(CapturedFile(f"page-{n + 1}.jpg", data, "image/jpeg", "application_form")
                   for n, data in enumerate(self.pages))]
        package = build_package(case_id=c.case_id, kiosk_id=c.kiosk_id, centre=CENTRE,
                                matter=MATTER, files=files, key=self.key, simulated=True)
        c.package_bytes = sum(len(f.data) for f in files)
        try:
            await asyncio.to_thread(self.spool.put, package)
            c.package = await deliver(self.spool, package.case_id, self.desk_url, c.kiosk_id,
                                      attempts=6, first_delay=0.5, max_delay=4)
        except DeliveryRefused as exc:
            c.package = f"refused:{exc.status}:{exc.code}"
        except Exception as exc:
            c.package = f"undelivered:{type(exc).__name__}"
        c.package_s = time.monotonic() - started

    async def close(self) -> None:
        self._closing = True
        if self._upload is not None and not self._upload.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._upload), 10)
        await self._close_peer()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.client.close()


# -- the clerks (headless stand-ins) --------------------------------------------------------------

@dataclass
class ClerkCall:
    """One call as a clerk lived it; times are time.monotonic()."""

    clerk: str
    call_id: str
    case_id: str
    accepted_at: float | None
    started_at: float
    first_frame_at: float | None = None
    frames: int = 0
    audio_frames: int = 0
    packets_lost: int = 0
    service_s: float | None = None
    held_s: float = 0.0
    video_window_s: float = 0.0
    """First frame from the kiosk -> the decision (the span the frames came in)."""
    case_seen_at: float | None = None
    decision_ms: float | None = None
    decision_error: str | None = None
    case_number: str | None = None
    ended_at: float | None = None
    ended_reason: str | None = None
    offer_at: float | None = None
    """The kiosk's offer reached the clerk."""
    answer_sent_at: float | None = None
    restarts: int = 0
    call_ids: list[str] = field(default_factory=list)
    """Every call id of this case (more than one after a restart)."""
    states: list[str] = field(default_factory=list)
    """The clerk's peer connection states, per call, with seconds since each started."""


class BenchClerk(HeadlessClerk):
    """The headless clerk, made ready for the next offer when a call ends (the page is so
    after every call), and reporting each call's start and end to the bench."""

    def __init__(self, base: str, username: str, password: str) -> None:
        super().__init__(base, username, password)
        self.starts: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ends: dict[str, asyncio.Event] = {}
        self.end_reasons: dict[str, str] = {}
        self.desk_errors: list[str] = []
        self.busy = False
        self.marks: dict[str, dict[str, float]] = {}
        """Per call: when its offer arrived and when the answer went out."""
        self.serving: ClerkCall | None = None
        """The case being served (a restarted call carries on under a new call id)."""

        self.peer_states: dict[str, list[str]] = {}
        """Per call id: the peer connection's states, with seconds since it was made."""

    async def send(self, event: str, data: dict[str, Any]) -> None:
        if event == "call.answer":
            self.marks.setdefault(str(data.get("call_id")), {})["answer_sent_at"] = \
                time.monotonic()
        await super().send(event, data)

    async def _new_peer(self) -> None:
        await super()._new_peer()
        pc, began = self.pc, time.monotonic()
        states = self.peer_states.setdefault(str((self.call or {}).get("call_id")), [])

        def state_changed() -> None:
            states.append(f"{pc.connectionState}@{time.monotonic() - began:.2f}")

        pc.on("connectionstatechange", state_changed)

    async def _on(self, event: str, data: dict[str, Any]) -> None:
        current = self.call["call_id"] if self.call else None
        if event == "desk.error":
            self.desk_errors.append(str(data.get("message"))[:120])
        ending = event == "call.ended" and current is not None and data.get("call_id") == current
        offer = event == "call.offer" and current is not None and data.get("call_id") == current
        if offer and current is not None:
            self.marks.setdefault(current, {})["offer_at"] = time.monotonic()
        await super()._on(event, data)
        if event == "call.start":
            self.ends[str(data["call_id"])] = asyncio.Event()
            if self.serving is not None and data.get("case_id") == self.serving.case_id:
                self.serving.call_id = str(data["call_id"])  # restarted: the same case
                self.serving.call_ids.append(self.serving.call_id)
                self.serving.restarts += 1
            else:
                self.starts.put_nowait({**data, "accepted_at": self.accepted_at,
                                        "started_at": time.monotonic()})
        if ending and current is not None:
            self.end_reasons[current] = str(data.get("reason"))
            self.ends[current].set()
            self.accepted_at = None  # ready for the next offer
            self.incoming = IncomingMedia(pictures=False)

    async def serve(self, service_for: dict[str, float], calls: list[ClerkCall]) -> None:
        """Take calls until cancelled: wait for the package, hold the call for the case's
        service time, decide (accept), and see the call end."""
        while True:
            self.busy = False
            start = await self.starts.get()
            self.busy = True
            call = ClerkCall(self.username, str(start["call_id"]), str(start["case_id"]),
                             start["accepted_at"], start["started_at"],
                             call_ids=[str(start["call_id"])])
            calls.append(call)
            self.serving = call
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if await self.case(call.case_id) is not None:
                    call.case_seen_at = time.monotonic()
                    break
                await asyncio.sleep(0.25)
            service = call.service_s = service_for.get(call.case_id, 0.0)
            await asyncio.sleep(max(0.0, call.started_at + service - time.monotonic()))
            call.held_s = time.monotonic() - call.started_at
            call.first_frame_at = self.incoming.first_video_at
            marks = self.marks.get(call.call_ids[0], {})
            call.offer_at, call.answer_sent_at = marks.get("offer_at"), marks.get("answer_sent_at")
            if call.first_frame_at is not None:
                call.video_window_s = time.monotonic() - call.first_frame_at
            call.frames, call.audio_frames = self.incoming.video_frames, self.incoming.audio_frames
            if self.pc is not None:
                with contextlib.suppress(Exception):
                    report = await asyncio.wait_for(self.pc.getStats(), 2)
                    call.packets_lost = sum(max(0, int(s.packetsLost)) for s in report.values()
                                            if getattr(s, "type", "") == "inbound-rtp")
            if call.case_seen_at is None:
                call.decision_error = "no package at the desk within 60 s"
            else:
                t = time.perf_counter()
                try:
                    body = await self.decide(call.case_id, "accept")
                    call.case_number = body.get("case_number")
                except Exception as exc:  # counted, never retried (see the report)
                    status = getattr(exc, "status", None)
                    call.decision_error = f"{type(exc).__name__} status={status}: {exc}"[:200]
                call.decision_ms = (time.perf_counter() - t) * 1000
            if call.decision_error is not None and self.call is not None:
                # no receipt to give: the clerk ends the call (the kiosk's "end" command)
                await self.send("call.command", {"call_id": call.call_id, "name": "end",
                                                 "args": {}})
            ended = self.ends[call.call_id]
            try:
                await asyncio.wait_for(ended.wait(), 30)
                call.ended_at = time.monotonic()
                call.ended_reason = self.end_reasons.get(call.call_id)
            except TimeoutError:
                call.ended_reason = "not ended within 30 s"
                await self.hang_up()
            call.states = [f"{cid[:6]} {state}" for cid in call.call_ids
                           for state in self.peer_states.get(cid, [])]
            call.states += [f"{cid[:6]} ended: {self.end_reasons.get(cid)}"
                            for cid in call.call_ids]
            self.serving = None


# -- the clerks' own process ----------------------------------------------------------------------

async def clerk_worker() -> None:
    """The headless clerks in a process of their own (a clerk's browser is another machine,
    and the load generator must not starve on one core). In: one JSON line (desk, password,
    names), then one line per arriving citizen (case id, service time), then a stop line.
    Out: one line when every clerk is signed in, one with every call at the end."""
    logs.configure("error")
    loopback_only()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    setup = json.loads(await reader.readline())
    # the stand-in's camera as light as the kiosk's (headless.py's own is 480x360 at 30 fps):
    # the clerk's browser is another machine, its cost must not starve the product here
    size, fps = tuple(setup["video"]), int(setup["fps"])
    clerks = [BenchClerk(setup["desk_url"], name, setup["password"]) for name in setup["names"]]
    for clerk in clerks:
        clerk.camera = lambda: kiosk_camera(size, fps)
        await clerk.start()
    print(json.dumps({"ready": True}), flush=True)
    service_for: dict[str, float] = {}
    calls: list[ClerkCall] = []
    lag = LoopLag()
    lag.start()
    tasks = [asyncio.ensure_future(c.serve(service_for, calls)) for c in clerks]
    while line := await reader.readline():
        message = json.loads(line)
        if message.get("stop"):
            break
        service_for[str(message["case_id"])] = float(message["service_s"])
    deadline = time.monotonic() + 15  # calls still winding up
    while any(c.busy for c in clerks) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    lag.stop()
    for task in tasks:
        task.cancel()
    for clerk in clerks:
        with contextlib.suppress(Exception):
            await clerk.close()
    print(json.dumps({"calls": [asdict(c) for c in calls],
                      "desk_errors": [e for c in clerks for e in c.desk_errors][:20],
                      "busy_at_stop": [c.username for c in clerks if c.busy],
                      "loop_lag_ms": dist(lag.lags)}), flush=True)


class ClerkWorker:
    """The parent's side of ``clerk_worker``."""

    def __init__(self, folder: Path) -> None:
        self.log = folder / "clerks.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, desk_url: str, password: str, names: list[str],
                    video: tuple[int, int], fps: int) -> Service:
        with open(self.log, "wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--clerk-worker", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=err, limit=1 << 22)
        self._write({"desk_url": desk_url, "password": password, "names": names,
                     "video": list(video), "fps": fps})
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if not line:
            raise RuntimeError("the clerks' process ended at start: "
                               + self.log.read_text("utf-8", "replace")[-800:])
        return Service("clerks (headless stand-ins)", self.proc, "", self.log)

    def _write(self, message: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())

    def tell(self, case_id: str, service_s: float) -> None:
        self._write({"case_id": case_id, "service_s": service_s})

    async def finish(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        self._write({"stop": True})
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        await asyncio.wait_for(self.proc.wait(), 20)
        if not line:
            raise RuntimeError("the clerks' process ended without its report: "
                               + self.log.read_text("utf-8", "replace")[-800:])
        result: dict[str, Any] = json.loads(line)
        return result

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


# -- measuring ------------------------------------------------------------------------------------

class LoopLag:
    """How late this process's event loop wakes (the load generator must not be the limit)."""

    def __init__(self, period: float = 0.05) -> None:
        self.period = period
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.period)
            self.lags.append((time.perf_counter() - t - self.period) * 1000)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def dist(values: list[float], digits: int = 1) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(statistics.median(values), digits),
            "p95": round(pct(values, 95) or 0, digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def code_version() -> dict[str, Any]:
    """Which code ran: the commit, and the files of the product changed beside it (the hub's
    wait estimate is being reworked: a rerun must say what it measured)."""
    root = Path(__file__).resolve().parent.parent

    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], cwd=root, capture_output=True, text=True,
                                  timeout=10, check=False).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "signaling",
                                        "remote_desk", "kiosk", "tongban").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(),
            "subject": git("log", "-1", "--format=%s").strip()[:100], "uncommitted": changed}


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def hub_metrics(url: str) -> dict[str, float]:
    """The refusal and error counters of one hub (its /metrics, on loopback)."""
    out: dict[str, float] = {}
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
        async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as r:
            for line in (await r.text()).splitlines():
                if line.startswith(("tongban_hub_event_errors_total{",
                                    "tongban_hub_refusals_total{",
                                    "tongban_hub_call_setups_total ")):
                    name, value = line.rsplit(" ", 1)
                    if float(value):
                        out[name] = float(value)
    return out


def log_findings(path: Path) -> dict[str, Any]:
    """Warnings and errors in a service's JSON log: counts by event, and a few lines."""
    counts: Counter[str] = Counter()
    lines: list[str] = []
    if not path.exists():
        return {}
    for raw in path.read_text("utf-8", "replace").splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            if raw.strip() and not raw.startswith(("tongban ", " ", "Traceback")):
                counts["(not JSON) " + raw[:60]] += 1
            continue
        level = str(entry.get("level", ""))
        if level in ("warning", "error", "critical"):
            counts[f"{level}: {entry.get('event')}"] += 1
            if len(lines) < 5:
                lines.append(json.dumps({k: v for k, v in entry.items()
                                         if k in ("level", "event", "logger", "timestamp",
                                                  "exception", "socket_event", "code")},
                                        ensure_ascii=False)[:400])
    return {"counts": dict(counts), "first": lines}


# -- the run --------------------------------------------------------------------------------------

async def run(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import text

    from remote_desk import audit
    from remote_desk.blobs import new_key
    from remote_desk.db import make_engine, sessions, upgrade
    from remote_desk.users import Role, add_user
    from signaling.auth import CredentialStore, private_key_pem
    from signaling.directory import load_directory

    began = time.monotonic()
    hard_deadline = began + args.max_seconds
    loopback_only()

    the_plan = plan(args)
    report: dict[str, Any] = {
        "bench": "day", "simulated": "kiosks SIMULATED (bench kiosks from the product's "
                                     "modules, synthetic tracks and pages); clerks headless "
                                     "stand-ins",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
        "command": "bench/day.py " + " ".join(sys.argv[1:]), "code": code_version(),
        "setup": {"kiosks": args.kiosks, "sites": args.sites, "clerks": args.clerks,
                  "hub_processes": 2, "desk": "1 process, PostgreSQL",
                  "morning_seconds": args.morning_seconds, "seed": args.seed,
                  "avg_service_minutes": args.avg_service_minutes,
                  "service_s": dist(the_plan.service_s),
                  "kiosk_media": f"{args.video[0]}x{args.video[1]}@{args.fps} synthetic "
                                 "video + tone, both ways (the clerk stand-in's camera made as "
                                 "light)"},
    }
    folder = Path(tempfile.mkdtemp(prefix="tongban-day-"))
    db_name = f"tongban_bench_day_{os.getpid()}"
    services = Services(folder)
    redis_client: Any = None
    engine: Any = None
    db_created = False
    kiosks: list[SimulatedKiosk] = []
    worker = ClerkWorker(folder)
    lag = LoopLag()
    try:
        redis_url, redis_client = await claim_redis(args.max_seconds)
        db_url = await create_database(db_name)
        db_created = True
        await asyncio.to_thread(upgrade, db_url)
        engine = make_engine(db_url)
        password = "bench-" + secrets.token_hex(8)
        clerk_names = [f"clerk{i + 1}" for i in range(args.clerks)]
        async with sessions(engine)() as db:
            for name in clerk_names:
                await add_user(db, name, f"坐席{name[5:]}", password, Role.CLERK, [CENTRE])
            await db.commit()

        # credentials, directory, configs
        creds = CredentialStore(folder / "hub-credentials.json")
        desk_key = creds.create("desk-c1", p.ClientKind.DESK, centres=[CENTRE])
        (folder / "desk.key").write_bytes(private_key_pem(desk_key))
        (folder / "desk.key").chmod(0o600)
        kiosk_keys = [creds.create(f"kiosk{i + 1:02d}", p.ClientKind.KIOSK,
                                   site=f"site{i % args.sites + 1}") for i in range(args.kiosks)]
        directory = bench_directory(args)
        (folder / "directory.toml").write_text(directory_toml(directory), "utf-8")
        if load_directory(folder / "directory.toml") != directory:
            raise RuntimeError("the directory file does not read back as the bench directory")
        hub_urls = []
        for name in ("hub-a", "hub-b"):
            port = free_port()
            config = folder / f"{name}.toml"
            config.write_text(f'[hub]\nredis_channel = "tongban-day-{os.getpid()}"\n'
                              f'process_name = "{name}"\n', "utf-8")
            hub = await services.start(name, [
                "signaling", "serve", "--config", str(config), "--port", str(port),
                "--credentials", str(folder / "hub-credentials.json"),
                "--directory", str(folder / "directory.toml"), "--redis", redis_url], port)
            hub_urls.append(hub.url)
        desk_port = free_port()
        (folder / "desk.toml").write_text("\n".join([
            "[desk]", f'host = "{HOST}"', f"port = {desk_port}",
            f"database = {json.dumps(db_url)}",
            f"files_dir = {json.dumps(str(folder / 'desk-files'))}",
            f"kiosk_credentials = {json.dumps(str(folder / 'hub-credentials.json'))}",
            f'centres = ["{CENTRE}"]', f"hub_url = {json.dumps(hub_urls[1])}",
            'desk_id = "desk-c1"', f"hub_key = {json.dumps(str(folder / 'desk.key'))}",
            "[desk.matters]", f'{CENTRE} = ["{MATTER}"]', ""]), "utf-8")
        desk = await services.start("desk", ["desk", "serve", "--config",
                                             str(folder / "desk.toml")], desk_port,
                                    env={"TONGBAN_DESK_FILES_KEY": new_key()})

        # the SIMULATED kiosks (pages rendered now: a real kiosk captures them before queueing)
        pages = await asyncio.to_thread(lambda: [
            [synthetic_page(f"case {i + 1} page {n + 1}", args.seed * 1000 + i * 10 + n)
             for n in range(args.pages)] for i in range(args.kiosks)])
        for i in range(args.kiosks):
            hub_index = i % 2
            citizen = Citizen(i + 1, f"kiosk{i + 1:02d}", "ab"[hub_index],
                              f"site{i % args.sites + 1}", the_plan.service_s[i])
            kiosks.append(SimulatedKiosk(citizen, kiosk_keys[i], hub_urls[hub_index], desk.url,
                                         folder / "spool" / citizen.kiosk_id, pages[i],
                                         args.video, args.fps))
        await asyncio.gather(*(k.connect() for k in kiosks))
        measured = [*services.all, await worker.start(desk.url, password, clerk_names,
                                                          args.video, args.fps)]
        await asyncio.sleep(1.5)  # every clerk's presence has reached the hubs

        async def citizen(kiosk: SimulatedKiosk, at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            kiosk.c.case_id = secrets.token_urlsafe(12)
            worker.tell(kiosk.c.case_id, kiosk.c.service_s)  # the clerk's share of the plan
            await kiosk.arrive()

        # the morning
        for m in measured:
            m.at_start = proc_sample(m.proc.pid)
        cpu0, wall0 = _self_cpu(), time.monotonic()
        load0 = os.getloadavg()
        lag.start()
        arrivals = [asyncio.ensure_future(citizen(k, wall0 + the_plan.arrivals_s[i]))
                    for i, k in enumerate(kiosks)]
        budget = hard_deadline - time.monotonic() - 45  # leave time to stop and report
        timed_out = False
        try:
            async with asyncio.timeout(max(1.0, budget)):
                await asyncio.gather(*arrivals)
                await asyncio.gather(*(k.done.wait() for k in kiosks))
        except TimeoutError:
            timed_out = True
        morning_s = time.monotonic() - wall0
        self_cpu = _self_cpu() - cpu0
        report["machine_load"] = {"loadavg_1min_at_start": round(load0[0], 2),
                                  "loadavg_1min_at_end": round(os.getloadavg()[0], 2)}
        lag.stop()
        for m in measured:
            m.at_end = proc_sample(m.proc.pid)
        metrics = {name: await hub_metrics(url) for name, url in zip(("hub-a", "hub-b"),
                                                                    hub_urls, strict=True)}
        clerk_report = await worker.finish()
        calls = [ClerkCall(**c) for c in clerk_report["calls"]]
        for k in kiosks:
            await k.close()

        # the desk's own records
        async with sessions(engine)() as db:
            rows = (await db.execute(text(
                "SELECT id, kiosk_id, state, case_number, decided_at IS NOT NULL "
                "FROM cases"))).all()
            async with sessions(engine)() as db2:
                chain = await audit.verify(db2)
        residue = sum(len(k.spool.pending()) for k in kiosks)
        for k in kiosks:  # events the hub client dropped because they did not validate
            k.c.problems += [f"hub event {e} did not validate"
                             for e in getattr(k.client, "refused", [])]
        report.update(summarise(args, kiosks, calls, rows, timed_out, wall0, morning_s,
                                 residue))
        report["audit_chain"] = {"ok": chain.ok, "entries": chain.entries,
                                 "broken_at": chain.broken_at, "reason": chain.reason}
        report["processes"] = {m.name: process_figures(m, morning_s) for m in measured}
        report["processes"]["clerks (headless stand-ins)"]["loop_lag_ms"] = \
            clerk_report["loop_lag_ms"]
        report["processes"]["kiosks (SIMULATED, this process)"] = {
            "cpu_s": round(self_cpu, 1), "cores": round(self_cpu / morning_s, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "loop_lag_ms": dist(lag.lags)}
        report["hub_metrics"] = metrics
        report["clerk_desk_errors"] = clerk_report["desk_errors"]
        if clerk_report["busy_at_stop"]:
            report["clerks_busy_at_stop"] = clerk_report["busy_at_stop"]
    finally:
        lag.stop()
        for k in kiosks:
            with contextlib.suppress(Exception):
                await k.close()
        worker.kill()
        services.stop()
        report["exit_codes"] = {s.name: s.proc.returncode for s in services.all}
        report["logs"] = {**{s.name: log_findings(s.log) for s in services.all},
                          "clerks": log_findings(worker.log)}
        if engine is not None:
            await engine.dispose()
        if db_created:
            with contextlib.suppress(Exception):
                await drop_database(db_name)
        if redis_client is not None:
            with contextlib.suppress(Exception):
                await redis_client.flushdb()
            await redis_client.aclose()
        if args.keep_logs is not None:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for s in [*services.all, worker]:
                if s.log.exists():
                    (args.keep_logs / s.log.name).write_bytes(s.log.read_bytes())
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    report["wall_s"] = round(time.monotonic() - began, 1)
    return report


def process_figures(s: Service, morning_s: float) -> dict[str, Any]:
    if s.at_start is None or s.at_end is None:
        return {"error": "process gone before it was measured"}
    cpu = s.at_end.cpu_s - s.at_start.cpu_s
    return {"pid": s.proc.pid, "cpu_s": round(cpu, 2), "cores": round(cpu / morning_s, 3),
            "cpu_s_since_start": round(s.at_end.cpu_s, 2),
            "peak_rss_mb": round(s.at_end.hwm_mb, 1), "rss_mb_at_end": round(s.at_end.rss_mb, 1)}


def summarise(args: argparse.Namespace, kiosks: list[SimulatedKiosk], calls: list[ClerkCall],
              rows: list[Any], timed_out: bool, wall0: float, morning_s: float,
              residue: int) -> dict[str, Any]:
    citizens = [k.c for k in kiosks]
    by_case: dict[str, list[Any]] = {}
    for row in rows:
        by_case.setdefault(row[0], []).append(row)
    calls_by_case: dict[str, list[ClerkCall]] = {}
    for call in calls:
        calls_by_case.setdefault(call.case_id, []).append(call)
    per_kiosk = Counter(row[1] for row in rows)
    numbers = Counter(row[3] for row in rows if row[3])

    lost: list[str] = []
    duplicated: list[str] = []
    completed = 0
    for c in citizens:
        why: list[str] = []
        if c.requested_at is None:
            why.append("never arrived (run stopped)")
        elif c.service_closed:
            why.append(f"service.closed {c.service_closed}")
        elif not c.updates:
            why.append("no ticket.update at all")
        if c.requested_at is not None and c.call_started_at is None and not c.service_closed:
            why.append("no call.start")
        if c.call_started_at is not None and c.package not in ("stored", "already"):
            why.append(f"package {c.package}")
        desk_rows = by_case.get(c.case_id, [])
        if c.call_started_at is not None and not desk_rows:
            why.append("no desk case")
        if desk_rows and not desk_rows[0][4]:
            why.append("desk case has no decision")
        if c.receipt is None and c.call_started_at is not None:
            why.append("no receipt at the kiosk")
        elif c.receipt is not None and (c.receipt.get("name") != "receipt"
                                        or not c.receipt.get("case_number")):
            why.append(f"kiosk got {c.receipt.get('name')} without a case number")
        if c.requested_at is not None and c.closed_reason != "completed":
            why.append(f"ticket closed as {c.closed_reason}")
        if why:
            lost.append(f"citizen {c.index} ({c.kiosk_id}, hub {c.hub}): " + "; ".join(why))
        else:
            completed += 1
        if per_kiosk.get(c.kiosk_id, 0) > 1:
            duplicated.append(f"{c.kiosk_id}: {per_kiosk[c.kiosk_id]} desk cases for one ticket")
        if c.call_starts > 1 + c.restarts:
            duplicated.append(f"citizen {c.index}: {c.call_starts} call.start for one ticket "
                              f"({c.restarts} restarts asked)")
        if len(calls_by_case.get(c.case_id, [])) > 1:
            duplicated.append(f"citizen {c.index}: offered to "
                              f"{len(calls_by_case[c.case_id])} clerk calls")
    duplicated += [f"case number {n} given {k} times" for n, k in numbers.items() if k > 1]
    known_cases = {c.case_id for c in citizens}
    strays = [row[0] for row in rows if row[0] not in known_cases]
    if strays:
        duplicated.append(f"{len(strays)} desk case(s) no citizen asked for")

    # waits: actual (request -> call.start) against what was shown
    floor = args.relative_floor_s
    first_rows: list[dict[str, Any]] = []
    every_abs: list[float] = []
    every_rel: list[float] = []
    no_update_before_call = 0
    for c in citizens:
        if c.requested_at is None or c.call_started_at is None:
            continue
        actual = c.call_started_at - c.requested_at
        shown = [u for u in c.updates if u.state in WAITING and u.expected_wait_s is not None
                 and u.t <= c.call_started_at]
        if not shown:
            no_update_before_call += 1
            first_rows.append({"citizen": c.index, "hub": c.hub, "actual_s": round(actual, 1),
                               "first_shown_s": None, "first_position": None,
                               "updates": len(c.updates)})
            continue
        first = shown[0]
        first_rows.append({"citizen": c.index, "hub": c.hub,
                           "arrived_s": round(c.requested_at - wall0, 1),
                           "first_position": first.position, "first_shown_s":
                           first.expected_wait_s, "actual_s": round(actual, 1),
                           "error_s": round(float(first.expected_wait_s or 0) - actual, 1),
                           "first_update_after_ms": round((first.t - c.requested_at) * 1000),
                           "updates": len(shown)})
        for u in shown:
            remaining = c.call_started_at - u.t
            every_abs.append(abs(float(u.expected_wait_s or 0) - remaining))
            if remaining >= floor:
                every_rel.append(abs(float(u.expected_wait_s or 0) - remaining) / remaining)
    waited = [r for r in first_rows if r["first_shown_s"] is not None and r["actual_s"] >= floor]
    at_once = [r for r in first_rows if r["first_shown_s"] is not None and r["actual_s"] < floor]
    rel = [abs(r["error_s"]) / r["actual_s"] for r in waited]
    waits = {
        "actual_s": dist([r["actual_s"] for r in first_rows]),
        "first_shown_s": dist([float(r["first_shown_s"]) for r in first_rows
                               if r["first_shown_s"] is not None]),
        "median_relative_error_first_update": None if not rel else
        round(statistics.median(rel), 3),
        "relative_error_counts": f"{len(waited)} citizens who waited >= {floor:g} s",
        "median_signed_error_s_first_update": None if not waited else
        round(statistics.median(r["error_s"] for r in waited), 1),
        "served_within_floor": {"n": len(at_once), "shown_s": dist(
            [float(r["first_shown_s"]) for r in at_once])},
        "median_abs_error_s_first_update_all": None if not first_rows else round(
            statistics.median(abs(r.get("error_s", 0.0)) for r in first_rows
                              if r["first_shown_s"] is not None), 1),
        "median_relative_error_every_update": None if not every_rel else
        round(statistics.median(every_rel), 3),
        "every_update_counts": f"{len(every_rel)} of {len(every_abs)} updates with "
                               f">= {floor:g} s left",
        "median_abs_error_s_every_update": None if not every_abs else
        round(statistics.median(every_abs), 1),
        "citizens_with_no_wait_shown_before_call": no_update_before_call,
        "goal": "median relative error < 0.25",
        "per_citizen": first_rows,
    }

    setups = [(c.first_frame_at - c.accepted_at) * 1000 for c in calls
              if c.first_frame_at is not None and c.accepted_at is not None]
    kiosk_first = [(c.first_clerk_frame_at - c.call_started_at) * 1000 for c in citizens
                   if c.first_clerk_frame_at is not None and c.call_started_at is not None]
    phases: dict[str, list[float]] = {
        "accept -> call.start at kiosk": [], "call.start -> offer sent (kiosk)": [],
        "offer relayed to the clerk": [], "clerk answers": [],
        "answer relayed to the kiosk": [], "answer -> first frame at the clerk": []}
    by_case_id = {c.case_id: c for c in citizens}
    for call in calls:
        c = by_case_id.get(call.case_id)
        points = [call.accepted_at, c and c.call_started_at, c and c.offer_sent_at,
                  call.offer_at, call.answer_sent_at, c and c.answer_at, call.first_frame_at]
        if c is None or c.call_starts != 1 or any(t is None for t in points):
            continue
        for name, a, b in zip(phases, points, points[1:], strict=False):
            phases[name].append((float(b) - float(a)) * 1000)
    media_problems: list[str] = []
    for call in calls:
        if call.restarts:
            media_problems.append(f"{call.clerk} call {call.call_ids[0][:6]}: restarted "
                                  f"{call.restarts}x; clerk's peer states {call.states}")
        if call.first_frame_at is None or call.frames == 0:
            media_problems.append(f"{call.clerk} call {call.call_id[:6]}: NO video at the clerk "
                                  f"(peer states {call.states})")
        if call.audio_frames == 0:
            media_problems.append(f"{call.clerk} call {call.call_id[:6]}: NO audio at the clerk")
        if call.packets_lost:
            media_problems.append(f"{call.clerk} call {call.call_id[:6]}: "
                                  f"{call.packets_lost} packets lost at the clerk")
    for c in citizens:
        if c.call_started_at is None:
            continue
        if c.restarts:
            media_problems.append(f"citizen {c.index}: the kiosk restarted the call "
                                  f"{c.restarts}x (media broke); kiosk's peer states {c.states}")
        if c.frames_from_clerk == 0:
            media_problems.append(f"citizen {c.index}: NO video from the clerk (peer states "
                                  f"{c.states})")
        if c.audio_frames_from_clerk == 0:
            media_problems.append(f"citizen {c.index}: NO audio from the clerk")
        if c.packets_lost_at_kiosk:
            media_problems.append(f"citizen {c.index}: {c.packets_lost_at_kiosk} packets lost "
                                  "at the kiosk")
    per_call = []
    for call in calls:
        c = by_case_id.get(call.case_id)
        per_call.append({
            "citizen": c.index if c else None, "clerk": call.clerk, "restarts": call.restarts,
            "accept_to_first_frame_ms": None if call.first_frame_at is None
            or call.accepted_at is None else round((call.first_frame_at - call.accepted_at)
                                                   * 1000),
            "frames_at_clerk": call.frames, "frames_at_kiosk": c.frames_from_clerk if c else None,
            "held_s": round(call.held_s, 1), "decision_error": call.decision_error,
            "clerk_peer_states": call.states, "kiosk_peer_states": c.states if c else None,
            "kiosk_calls_ended": c.ended if c else None,
            "kiosk_receipt": (c.receipt or {}).get("name") if c else None})
    sent_fps = 30 / max(1, round(30 / max(1, args.fps)))
    fps_at_clerk = [c.frames / c.video_window_s for c in calls if c.video_window_s > 2]
    fps_at_kiosk = [c.frames_from_clerk / c.video_window_s for c in citizens
                    if c.video_window_s > 2]
    # fewer frames than the track's rate: lost on the way if packets were lost, else never
    # sent (the sending side fell behind: an overloaded machine or load generator)
    slow: list[str] = []
    for call in calls:
        if call.video_window_s > 2 and call.frames / call.video_window_s < 0.8 * sent_fps:
            (media_problems if call.packets_lost else slow).append(
                f"{call.clerk} call {call.call_id[:6]}: {call.frames / call.video_window_s:.1f}"
                f" fps received at the clerk of {sent_fps:g} sent")
    for c in citizens:
        if c.video_window_s > 2 and c.frames_from_clerk / c.video_window_s < 0.8 * sent_fps:
            (media_problems if c.packets_lost_at_kiosk else slow).append(
                f"citizen {c.index}: {c.frames_from_clerk / c.video_window_s:.1f} fps received "
                f"at the kiosk of {sent_fps:g} sent")
    decision_errors = [f"{c.clerk}: {c.decision_error}" for c in calls if c.decision_error]
    hub_errors = Counter(e for c in citizens for e in c.hub_errors)
    problems = [f"citizen {c.index}: {x}" for c in citizens for x in c.problems]
    # a run that lost messages or frames reports that, not a latency
    unreliable = [*(["cases lost"] if lost else []),
                  *(["messages lost or refused at kiosks"] if problems else []),
                  *(["frames lost"] if media_problems else [])]
    latency: dict[str, Any] = {
        "accept_to_first_frame_ms": dist(setups),
        "accept_to_first_frame_phases_ms": {k: dist(v) for k, v in phases.items()},
        "call_start_to_first_clerk_frame_at_kiosk_ms": dist(kiosk_first)}
    if unreliable:
        latency = {**{k: {"not_reported": "; ".join(unreliable)} for k in latency},
                   **{k + "_unreliable": v for k, v in latency.items()}}
    return {
        "timed_out": timed_out,
        "morning_s": round(morning_s, 1),
        "cases": {"asked": len(citizens), "completed": completed, "lost": len(lost),
                  "duplicated": len(duplicated), "lost_detail": lost,
                  "duplicated_detail": duplicated, "desk_cases": len(rows),
                  "desk_decided": sum(1 for r in rows if r[4]),
                  "decision_failures": decision_errors, "kiosk_hub_errors": dict(hub_errors),
                  "kiosk_disconnects": sum(c.disconnects for c in citizens),
                  "kiosk_problems": problems[:10], "spool_residue": residue},
        "waits": waits,
        **latency,
        "media": {"calls": len(calls), "restarts": sum(c.restarts for c in citizens),
                  "video_fps_sent": sent_fps,
                  "video_fps_at_clerk": dist(fps_at_clerk),
                  "video_fps_at_kiosk": dist(fps_at_kiosk),
                  "packets_lost_at_clerks": sum(c.packets_lost for c in calls),
                  "packets_lost_at_kiosks": sum(c.packets_lost_at_kiosk for c in citizens),
                  "problems": media_problems, "low_frame_rate_no_loss": slow,
                  "per_call": per_call},
        "package": {"delivered": sum(1 for c in citizens if c.package in ("stored", "already")),
                    "bytes": dist([float(c.package_bytes) for c in citizens
                                   if c.package_bytes], 0),
                    "call_start_to_stored_ms": dist([c.package_s * 1000 for c in citizens
                                                     if c.package_s is not None])},
        "decision_ms": dist([c.decision_ms for c in calls if c.decision_ms is not None]),
        "case_time_s": dist([c.closed_at - c.requested_at for c in citizens
                             if c.closed_at and c.requested_at]),
    }


# -- output ---------------------------------------------------------------------------------------

def _fmt(d: Any) -> str:
    if isinstance(d, dict) and "p50" in d:
        return (f"p50 {d['p50']}  p95 {d['p95']}  min {d['min']}  max {d['max']}  "
                f"(n={d['n']})")
    if isinstance(d, dict) and d.get("n") == 0:
        return "(none)"
    if isinstance(d, dict) and "not_reported" in d:
        return f"!!! NOT REPORTED: {d['not_reported']}"
    return str(d)


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


def print_readable(r: dict[str, Any]) -> None:
    out = print
    out("day: a simulated morning at one centre (issue 11)")
    out(f"  {r['simulated']}")
    out(f"  {r['date']}  {r['machine']}")
    out(f"  {r['command']}")
    code = r.get("code", {})
    out(f"  code {code.get('commit')} ({code.get('subject')}); uncommitted: "
        f"{', '.join(code.get('uncommitted') or []) or 'none'}")
    s = r.get("setup", {})
    out(f"  {s.get('kiosks')} kiosks at {s.get('sites')} sites, {s.get('clerks')} clerks, "
        f"2 hubs over Redis, desk on PostgreSQL; morning {s.get('morning_seconds')} s, "
        f"seed {s.get('seed')}, service time {_fmt(s.get('service_s'))} s")
    if "cases" not in r:
        out("  NO RESULT: the run failed before the morning ended")
        return
    cases = r["cases"]
    out("")
    flag = "" if not (cases["lost"] or cases["duplicated"]) else "   <<< LOST OR DUPLICATED"
    out(f"cases: {cases['completed']} of {cases['asked']} completed, {cases['lost']} lost, "
        f"{cases['duplicated']} duplicated{flag}")
    if r.get("timed_out"):
        out("  !!! the morning hit --max-seconds before every case ended")
    for line in cases["lost_detail"] + cases["duplicated_detail"]:
        out(f"  !!! {line}")
    for line in cases["decision_failures"]:
        out(f"  !!! decision failed: {line}")
    out(f"  desk cases {cases['desk_cases']}, decided {cases['desk_decided']}; "
        f"morning {r['morning_s']} s; kiosk hub errors {cases['kiosk_hub_errors'] or 'none'}; "
        f"kiosk disconnects {cases['kiosk_disconnects']}; spool residue "
        f"{cases['spool_residue']}")
    for line in cases["kiosk_problems"]:
        out(f"  !!! {line}")
    w = r["waits"]
    out("")
    out("waits (ticket request -> call.start at the kiosk), expected wait as the hub shows it:")
    out(f"  actual s            {_fmt(w['actual_s'])}")
    out(f"  first shown s       {_fmt(w['first_shown_s'])}")
    out(f"  median relative error, first update: {w['median_relative_error_first_update']} "
        f"({w['relative_error_counts']}; goal < 0.25); median signed error "
        f"{w['median_signed_error_s_first_update']} s")
    out(f"  served within the floor: {w['served_within_floor']['n']} citizens, shown "
        f"{_fmt(w['served_within_floor']['shown_s'])} s")
    out(f"  median relative error, every update: {w['median_relative_error_every_update']} "
        f"({w['every_update_counts']}); median absolute error every update "
        f"{w['median_abs_error_s_every_update']} s")
    if w["citizens_with_no_wait_shown_before_call"]:
        out(f"  !!! {w['citizens_with_no_wait_shown_before_call']} citizens were shown no wait "
            "before their call")
    out("  citizen hub arrived s  first: position shown s  actual s  error s  updates")
    for row in w["per_citizen"]:
        out(f"  {row['citizen']:>7} {row['hub']:>3} {_dash(row.get('arrived_s')):>9} "
            f"{_dash(row['first_position']):>16} {_dash(row['first_shown_s']):>7} "
            f"{row['actual_s']:>9} {_dash(row.get('error_s')):>8} {row['updates']:>8}")
    out("")
    media = r["media"]
    if media["problems"]:
        out("MEDIA PROBLEMS:")
        for line in media["problems"]:
            out(f"  !!! {line}")
    if media.get("low_frame_rate_no_loss"):
        out("LOW FRAME RATE, no packet lost (the sender fell behind: the machine or a load "
            "generator was overloaded; see the event-loop lag below):")
        for line in media["low_frame_rate_no_loss"]:
            out(f"  !!! {line}")
    out(f"accept -> first frame at the clerk ms   {_fmt(r['accept_to_first_frame_ms'])}")
    phases = r.get("accept_to_first_frame_phases_ms") or {}
    for name, d in ({} if "not_reported" in phases else phases).items():
        out(f"  {name:<37} {_fmt(d)}")
    out(f"call.start -> first clerk frame at kiosk ms "
        f"{_fmt(r['call_start_to_first_clerk_frame_at_kiosk_ms'])}")
    out(f"video fps at the clerk (sent {media['video_fps_sent']:g})     "
        f"{_fmt(media['video_fps_at_clerk'])}")
    out(f"video fps at the kiosk (sent {media['video_fps_sent']:g})     "
        f"{_fmt(media['video_fps_at_kiosk'])}")
    out(f"calls restarted by kiosks (media broke): {media['restarts']}")
    out(f"packets lost: at clerks {media['packets_lost_at_clerks']}, at kiosks "
        f"{media['packets_lost_at_kiosks']}")
    pk = r["package"]
    out(f"packages delivered {pk['delivered']}; bytes {_fmt(pk['bytes'])}")
    out(f"call.start -> package stored ms        {_fmt(pk['call_start_to_stored_ms'])}")
    out(f"decision (desk API) ms                  {_fmt(r['decision_ms'])}")
    out(f"ticket request -> ticket closed s       {_fmt(r['case_time_s'])}")
    chain = r.get("audit_chain", {})
    broken = "" if chain.get("ok") else f", at {chain.get('broken_at')}: {chain.get('reason')}"
    out(f"audit chain: {'intact' if chain.get('ok') else 'BROKEN'} ({chain.get('entries')} "
        f"entries{broken})")
    out("")
    out("processes over the morning      cpu s   cores  peak RSS MB")
    for name, fig in r.get("processes", {}).items():
        if "cpu_s" in fig:
            out(f"  {name:<30} {fig['cpu_s']:>6} {fig['cores']:>7} {fig['peak_rss_mb']:>11}")
            if "loop_lag_ms" in fig:
                out(f"    event-loop lag ms {_fmt(fig['loop_lag_ms'])}")
        else:
            out(f"  {name:<30} {fig}")
    if any(r.get("hub_metrics", {}).values()):
        out(f"hub counters: {r['hub_metrics']}")
    for name, found in r.get("logs", {}).items():
        if found.get("counts"):
            out(f"log {name}: {found['counts']}")
            for line in found["first"]:
                out(f"    {line}")
    if r.get("clerk_desk_errors"):
        out(f"desk.error to clerks: {r['clerk_desk_errors']}")
    load = r.get("machine_load", {})
    out(f"machine load average (1 min) {load.get('loadavg_1min_at_start')} at the start, "
        f"{load.get('loadavg_1min_at_end')} at the end (2 cores; other work shares them)")
    out(f"services' exit codes after SIGINT: {r.get('exit_codes')}")
    out(f"wall {r.get('wall_s')} s")


def main() -> None:
    if sys.argv[1:] == ["--clerk-worker"]:
        asyncio.run(clerk_worker())
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kiosks", type=int, default=20, help="citizens, one kiosk each")
    parser.add_argument("--sites", type=int, default=4, help="kiosk sites")
    parser.add_argument("--clerks", type=int, default=4)
    parser.add_argument("--morning-seconds", type=float, default=75.0,
                        help="arrivals spread over this many seconds")
    parser.add_argument("--avg-service-minutes", type=float, default=0.4,
                        help="the matter's average in the bench directory (0.4 = 24 s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pages", type=int, default=2, help="SIMULATED pages per package")
    parser.add_argument("--video", type=lambda v: tuple(int(x) for x in v.split("x")),
                        default=(320, 240), help="kiosk's synthetic video, WxH")
    parser.add_argument("--fps", type=int, default=15, help="kiosk's video frame rate "
                        "(the product's face camera: 15)")
    parser.add_argument("--relative-floor-s", type=float, default=5.0,
                        help="relative errors only where at least this much wait was left")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="bound of the run")
    parser.add_argument("--keep-logs", type=Path, default=None,
                        help="copy the hubs' and the desk's logs here")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.kiosks < 1 or args.clerks < 1 or args.sites < 1:
        parser.error("--kiosks, --clerks and --sites are at least 1")
    logs.configure("error")
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2, default=str))
    else:
        print_readable(report)
    cases = report.get("cases")
    if cases is None or cases["lost"] or cases["duplicated"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
