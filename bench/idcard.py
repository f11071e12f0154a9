"""Benchmark: a full card read (find + select + read base info) through a pty against the
SIMULATED reader pacing its replies at the line rate, compared with the wire-time floor.

The simulator runs in its own process (as a reader is its own hardware); the floor is the time
the request and reply bytes of the three commands need on the line at 10 bits a byte. The goal
(issue 2) is a median full read <= 1.10x that floor. Bounded: --reads reads, at most --seconds.

    uv run python bench/idcard.py [--reads 60] [--baud 115200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from devices.idcard import commands
from devices.idcard.frames import Response
from devices.idcard.reader import IdCardReader, ReaderConfig
from tongban import logs
from tongban.machine import machine

REQUEST_LEN = 10
FIND_REPLY = len(Response(0, 0, 0x9F, bytes(4)).encode())
SELECT_REPLY = len(Response(0, 0, 0x90, bytes(8)).encode())
READ_REPLY = {False: 1295, True: 2321}


def floor_ms(baud: int, fingerprint: bool) -> float:
    total = 3 * REQUEST_LEN + FIND_REPLY + SELECT_REPLY + READ_REPLY[fingerprint]
    return total * 10 / baud * 1000


async def measure(port: str, baud: int, reads: int, deadline: float,
                  fingerprint: bool) -> list[float]:
    config = ReaderConfig(port=port, baud=baud, retries=0)
    out: list[float] = []
    async with IdCardReader(config) as reader:
        await reader.read_card()  # warm-up: thread start, first open
        for _ in range(reads):
            if time.monotonic() > deadline:
                break
            result = await reader.read_card(fingerprint=fingerprint)
            out.append(result.timings.total_ms)
    return out


def run(reads: int, baud: int, seconds: float) -> dict[str, Any]:
    card = "resident-elderly"  # carries two fingerprints, for the 30 10 case
    sim = subprocess.Popen(
        [sys.executable, "-m", "tongban", "devices", "idcard", "simulate", "--card", card,
         "--reread", "stays", "--baud", str(baud), "--json"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        port = json.loads(sim.stdout.readline())["path"]
        deadline = time.monotonic() + seconds
        results: dict[str, Any] = {}
        for fingerprint in (False, True):
            samples = asyncio.run(measure(port, baud, reads, deadline, fingerprint))
            floor = floor_ms(baud, fingerprint)
            median = statistics.median(samples)
            results["base+fingerprint" if fingerprint else "base"] = {
                "reads": len(samples),
                "floor_ms": round(floor, 2),
                "median_ms": round(median, 2),
                "p90_ms": round(statistics.quantiles(samples, n=10)[-1], 2),
                "min_ms": round(min(samples), 2),
                "ratio_median_to_floor": round(median / floor, 4),
            }
    finally:
        if sim.stdin:
            sim.stdin.close()
        sim.terminate()
        sim.wait(10)
    return {
        "bench": "idcard",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "baud": baud,
        "goal": "median full read <= 1.10x wire-time floor",
        "commands": [c.name for c in (commands.FIND_CARD, commands.SELECT_CARD,
                                      commands.READ_BASE_INFO)],
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=60, help="reads per case (default 60)")
    parser.add_argument("--baud", type=int, default=115200, choices=sorted(commands.BAUD_CODES))
    parser.add_argument("--seconds", type=float, default=120, help="time cap for the whole run")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    logs.configure("error")
    report = run(args.reads, args.baud, args.seconds)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"idcard bench, {report['date']}, {report['machine']}, {args.baud} baud")
    print("| case | reads | wire floor ms | median ms | p90 ms | median / floor |")
    print("|---|---|---|---|---|---|")
    for case, r in report["results"].items():
        print(f"| {case} | {r['reads']} | {r['floor_ms']} | {r['median_ms']} | {r['p90_ms']} "
              f"| {r['ratio_median_to_floor']}x |")


if __name__ == "__main__":
    main()
