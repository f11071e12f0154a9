"""Benchmark the kiosk's call: accept-to-first-frame and the kiosk's CPU during a call.

(1) Floor: two aiortc peers in this process connected directly (offer, answer, ICE, DTLS, first
    decoded frame) with no hub, desk or kiosk between them: what WebRTC itself costs here.
(2) Kiosk path, loopback: the real hub, desk and kiosk service (simulated devices) and a
    headless clerk (aiortc, the desk page's protocol) in this process, media on 127.0.0.1 only.
    The clerk accepts; we time accept -> first decoded video frame at the clerk; the clerk hangs
    up, the citizen is offered again, and so on. The ratio to (1) is what the product adds.
(3) Browser clerk (root only): Debian's Chromium on a test host in its own network namespace
    (TESTING.md), the same measure taken in the page (accept click -> citizen video has a
    frame), and the kiosk process's CPU over a held call (this process then holds the kiosk,
    hub and desk; the clerk's decoding is in Chromium, not here), with the share of the
    camera threads (the SIMULATED cameras rendering their scenes) reported apart.

    uv run python bench/call.py [--calls 12] [--browser-calls 6] [--hold 20] [--json]

Goals (issue 7): accept-to-first-frame median <= 500 ms on loopback; kiosk CPU <= 1 core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import statistics
import time
from typing import Any

from tongban import logs
from tongban.machine import machine


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _camera_cpu() -> float:
    """CPU seconds of the camera grabber threads (here: the SIMULATED cameras rendering)."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    total = 0
    for tid in os.listdir("/proc/self/task"):
        if not names.get(int(tid), "").startswith("camera-"):
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def floor(runs: int) -> list[float]:
    """Direct aiortc-to-aiortc set-up to the first decoded frame (no signaling server)."""
    from tongban.rtc import peer_connection, synthetic_video

    out = []
    keep: list[asyncio.Task[None]] = []
    for _ in range(runs):
        a, b = peer_connection(), peer_connection()
        a.addTrack(synthetic_video())
        got = asyncio.Event()

        def on_track(track: Any, got: asyncio.Event = got) -> None:
            async def first() -> None:
                await track.recv()
                got.set()
            keep.append(asyncio.ensure_future(first()))

        b.on("track", on_track)
        started = time.perf_counter()
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        await asyncio.wait_for(got.wait(), 20)
        out.append((time.perf_counter() - started) * 1000)
        await a.close()
        await b.close()
    return out


async def kiosk_path(calls: int) -> dict[str, Any]:
    from remote_desk.headless import HeadlessClerk
    from tongban.demo import DEMO_CLERK, KioskBot, run_stack

    setups: list[float] = []
    phases: dict[str, list[float]] = {"accept_to_offer": [], "offer_to_answer": [],
                                      "answer_to_frame": []}
    async with run_stack(test_hosts=False) as stack:
        clerk = HeadlessClerk(stack.desk_url, DEMO_CLERK, stack.password)
        await clerk.start()
        try:
            await KioskBot(stack).apply("yongjia", "gjj-jczm", skip_non_key=True)
            for _ in range(calls):
                deadline = time.monotonic() + 30
                while clerk.first_frame_at is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                if clerk.first_frame_at is None or clerk.accepted_at is None:
                    raise RuntimeError("no first frame within 30 s")
                setups.append((clerk.first_frame_at - clerk.accepted_at) * 1000)
                peer = stack.kiosk.peer
                if peer is not None and peer.offered_at and peer.answered_at:
                    # the kiosk's clock is time.monotonic, the clerk's perf_counter: same base
                    # on Linux (CLOCK_MONOTONIC), so the phases line up
                    phases["accept_to_offer"].append(
                        (peer.offered_at - clerk.accepted_at) * 1000)
                    phases["offer_to_answer"].append((peer.answered_at - peer.offered_at) * 1000)
                    phases["answer_to_frame"].append(
                        (clerk.first_frame_at - peer.answered_at) * 1000)
                await asyncio.sleep(0.5)
                await clerk.hang_up()
        finally:
            await clerk.close()
    return {"setups": setups, "phases": {k: statistics.median(v) for k, v in phases.items()
                                         if v}}


async def browser_path(calls: int, hold: float) -> dict[str, Any]:
    from tongban.demo import ClerkBot, KioskBot, run_stack

    setups: list[float] = []
    async with run_stack(test_hosts=True) as stack:
        clerk = ClerkBot(stack)
        try:
            await clerk.start()
            # the idle kiosk (simulated cameras rendering, grabbers running) for comparison
            await asyncio.sleep(2)
            wall0, cpu0, cam0 = time.perf_counter(), _cpu(), _camera_cpu()
            await asyncio.sleep(hold / 2)
            idle_wall = time.perf_counter() - wall0
            idle = (_cpu() - cpu0) / idle_wall
            idle_cameras = (_camera_cpu() - cam0) / idle_wall
            await KioskBot(stack).apply("yongjia", "gjj-jczm", skip_non_key=True)
            page = clerk.page
            for n in range(calls):
                accept = await page.wait_for_selector("button.accept", timeout=30_000)
                t = time.perf_counter()
                await accept.click()
                await page.wait_for_function(
                    "document.getElementById('citizen').videoWidth > 0", timeout=30_000,
                    polling="raf")
                setups.append((time.perf_counter() - t) * 1000)
                if n < calls - 1:
                    await asyncio.sleep(0.5)
                    await page.click("#hangup")
                    await page.evaluate("document.getElementById('citizen').srcObject = null")
            # the last call is held: the kiosk's CPU (this process) while it runs
            await asyncio.sleep(2)
            wall0, cpu0, cam0 = time.perf_counter(), _cpu(), _camera_cpu()
            frames0 = (await clerk.stats())["frames"]
            await asyncio.sleep(hold)
            wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
            cameras = _camera_cpu() - cam0
            frames = (await clerk.stats())["frames"] - frames0
            incoming = stack.kiosk.peer.incoming.video_frames if stack.kiosk.peer else 0
        finally:
            await clerk.close()
    return {"setups": setups, "cpu_cores": cpu / wall, "idle_cores": idle, "hold_s": wall,
            "camera_cores": cameras / wall, "idle_camera_cores": idle_cameras,
            "frames_at_clerk_per_s": frames / wall, "frames_at_kiosk": incoming}


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(values), "median": round(statistics.median(values), 1),
            "min": round(ordered[0], 1), "max": round(ordered[-1], 1)}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    import aioice.ice

    from tongban import netns

    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    try:
        floor_ms = await floor(args.calls)
        path = await kiosk_path(args.calls)
    finally:
        aioice.ice.get_host_addresses = original
    result: dict[str, Any] = {
        "machine": machine(), "date": time.strftime("%Y-%m-%d"),
        "floor_ms": _stats(floor_ms), "kiosk_loopback_ms": _stats(path["setups"]),
        "kiosk_phases_median_ms": {k: round(v, 1) for k, v in path["phases"].items()},
    }
    result["ratio_to_floor"] = round(result["kiosk_loopback_ms"]["median"]
                                     / result["floor_ms"]["median"], 2)
    why = netns.available()
    if why is None and args.browser_calls > 0:
        browser = await browser_path(args.browser_calls, args.hold)
        result["browser_ms"] = _stats(browser["setups"])
        result["kiosk_cpu_cores"] = round(browser["cpu_cores"], 3)
        result["kiosk_cpu_cores_simulated_cameras"] = round(browser["camera_cores"], 3)
        result["kiosk_cpu_cores_without_simulators"] = round(
            browser["cpu_cores"] - browser["camera_cores"], 3)
        result["kiosk_idle_cpu_cores"] = round(browser["idle_cores"], 3)
        result["kiosk_idle_cpu_cores_simulated_cameras"] = round(browser["idle_camera_cores"],
                                                                 3)
        result["held_call"] = {"seconds": round(browser["hold_s"], 1),
                               "frames_at_clerk_per_s": round(browser["frames_at_clerk_per_s"],
                                                              1),
                               "frames_at_kiosk": browser["frames_at_kiosk"]}
    else:
        result["browser_skipped"] = why or "--browser-calls 0"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--browser-calls", type=int, default=6)
    parser.add_argument("--hold", type=float, default=20.0, help="seconds of held call")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logs.configure("error")
    logging.getLogger().setLevel("ERROR")
    result = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    for key, value in result.items():
        print(f"{key:<26} {value}")


if __name__ == "__main__":
    main()
