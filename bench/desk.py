"""Benchmark the desk server's hardening (issue 12): the event loop under password load, and
concurrent decisions on PostgreSQL.

(a) ``tongban desk serve`` in its own process (SQLite). /healthz is timed one request after
    another, first with nobody logging in (the peer), then while four clients (four loopback
    addresses) try wrong passwords as fast as the desk answers. Every login must be answered
    401; any other answer or a lost request fails the run. Goal: /healthz p95 <= 20 ms under
    the password load.
(b) The same desk on a scratch PostgreSQL database of its own (created and dropped here):
    ``--cases`` signed packages through the real intake, then every case decided at once over
    the HTTP API by five clerks, plus ``--duplicates`` second decisions of the same cases from
    a sixth clerk. Each must be 200 or a clean 409; every case decided exactly once; the case
    numbers unique and consecutive; ``GET /api/audit/verify`` intact.

    uv run python bench/desk.py [--samples 300] [--cases 50] [--duplicates 10] [--json]

Exit status 1 (and ``"ok": false``) when a check fails; nothing is reported as a latency then.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from tongban import logs
from tongban.machine import machine

PASSWORD = "bench password 1"
JPEG = b"\xff\xd8\xff\xe0" + b"bench page" * 200
PG_ADMIN = os.environ.get("TONGBAN_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


class BenchFailed(Exception):
    """A check failed: the run reports it instead of latencies."""


@dataclass
class DeskProcess:
    url: str
    proc: subprocess.Popen[bytes]
    folder: Path
    kiosk_key: Any = None
    log: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_desk(folder: Path, database: str, users: list[tuple[str, str]],
                     **settings: Any) -> DeskProcess:
    """Migrate, add ``users`` (name, role), write a kiosk credential, serve; wait for
    /healthz."""
    from remote_desk.db import make_engine, sessions, upgrade
    from remote_desk.users import Role, add_user
    from signaling.auth import CredentialStore
    from signaling.protocol import ClientKind

    await asyncio.to_thread(upgrade, database)
    engine = make_engine(database)
    async with sessions(engine)() as db:
        for name, role in users:
            await add_user(db, name, name, PASSWORD, Role(role), ["yongjia"])
        await db.commit()
    await engine.dispose()
    creds = folder / "creds.json"
    kiosk_key = CredentialStore(creds).create("bench-kiosk", ClientKind.KIOSK, site="s1")
    port = _free_port()
    lines = [f'database = "{database}"', f"port = {port}", 'host = "127.0.0.1"',
             f'files_dir = "{folder / "files"}"', f'kiosk_credentials = "{creds}"',
             'centres = ["yongjia"]']
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    config = folder / "desk.toml"
    config.write_text("[desk]\n" + "\n".join(lines) + "\n")
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    proc = subprocess.Popen([sys.executable, "-m", "tongban", "desk", "serve", "--config",
                             str(config)], env={**os.environ, "TONGBAN_DESK_FILES_KEY": key},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    desk = DeskProcess(f"http://127.0.0.1:{port}", proc, folder, kiosk_key)
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as s:
        while True:
            try:
                async with s.get(f"{desk.url}/healthz") as r:
                    if r.status == 200:
                        return desk
            except aiohttp.ClientError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                desk.stop()
                raise BenchFailed("the desk did not start")
            await asyncio.sleep(0.2)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": round(statistics.median(values), 2),
            "p95_ms": round(_percentile(values, 0.95), 2), "max_ms": round(max(values), 2)}


async def _healthz_times(url: str, samples: int, gap_s: float) -> list[float]:
    times = []
    async with aiohttp.ClientSession() as s:
        for _ in range(samples):
            started = time.perf_counter()
            async with s.get(f"{url}/healthz") as r:
                await r.read()
                if r.status != 200:
                    raise BenchFailed(f"/healthz answered {r.status}")
            times.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(gap_s)
    return times


async def _guesser(url: str, source: str, stop: asyncio.Event, counts: dict[int, int],
                   limit: int) -> None:
    """Wrong passwords, one after another, from ``source`` (names change: no name lockout)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as s:
        n = 0
        while not stop.is_set() and n < limit:
            name = "bench-clerk" if n % 2 else f"nobody-{source}-{n}"
            async with s.post(f"{url}/api/login",
                              json={"username": name, "password": f"guess {n}"}) as r:
                await r.read()
                counts[r.status] = counts.get(r.status, 0) + 1
            n += 1


async def password_load(folder: Path, samples: int) -> dict[str, Any]:
    desk = await start_desk(folder, f"sqlite:///{folder / 'desk.db'}",
                            [("bench-clerk", "clerk")], login_attempts=50,
                            login_address_attempts=1000, login_window_seconds=10)
    try:
        await _healthz_times(desk.url, 20, 0.01)  # warm-up
        idle = await _healthz_times(desk.url, samples, 0.02)
        stop = asyncio.Event()
        counts: dict[int, int] = {}
        load_started = time.perf_counter()
        guessers = [asyncio.create_task(_guesser(desk.url, f"127.0.0.{10 + i}", stop, counts,
                                                 limit=400)) for i in range(4)]
        await asyncio.sleep(1.0)  # the load is under way
        loaded = await _healthz_times(desk.url, samples, 0.02)
        if any(g.done() for g in guessers):
            raise BenchFailed("a password client stopped before /healthz was timed")
        stop.set()
        await asyncio.wait_for(asyncio.gather(*guessers), 60)
        seconds = time.perf_counter() - load_started
    finally:
        desk.stop()
    logins = sum(counts.values())
    if set(counts) != {401}:
        raise BenchFailed(f"logins were answered {counts}, not only 401")
    return {"healthz_idle": _summary(idle), "healthz_under_password_load": _summary(loaded),
            "p95_ratio_loaded_to_idle": round(_summary(loaded)["p95_ms"]
                                              / _summary(idle)["p95_ms"], 2),
            "password_checks": logins, "password_checks_per_s": round(
                logins / seconds, 1), "goal_p95_ms": 20,
            "goal_met": _summary(loaded)["p95_ms"] <= 20}


async def _scratch_postgres() -> tuple[str, str]:
    import asyncpg

    admin = await asyncpg.connect(PG_ADMIN.replace("postgresql://", "postgres://"), timeout=5)
    name = f"tongban_bench_desk_{os.getpid()}"
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", name


async def _drop_postgres(name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(PG_ADMIN.replace("postgresql://", "postgres://"), timeout=5)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def _package(key: Any, case_id: str) -> aiohttp.FormData:
    from remote_desk.package import Manifest, describe_file, sign

    manifest = Manifest(case_id=case_id, kiosk_id="bench-kiosk", centre="yongjia",
                        matter="yb-ydjz-ba", created_at=datetime.now(UTC),
                        files=[describe_file("page-1.jpg", JPEG, "image/jpeg", "id_copy")])
    form = aiohttp.FormData()
    form.add_field("manifest", manifest.model_dump_json(), content_type="application/json")
    form.add_field("signature", sign(manifest, key))
    form.add_field("file", JPEG, filename="page-1.jpg", content_type="image/jpeg")
    return form


async def _login(url: str, name: str) -> tuple[aiohttp.ClientSession, str]:
    s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with s.post(f"{url}/api/login", json={"username": name, "password": PASSWORD}) as r:
        if r.status != 200:
            await s.close()
            raise BenchFailed(f"{name} could not log in ({r.status})")
        return s, str((await r.json())["csrf"])


async def decisions(folder: Path, cases: int, duplicates: int) -> dict[str, Any]:
    url_db, name = await _scratch_postgres()
    clerks = [f"bench-clerk-{i}" for i in range(6)]
    try:
        desk = await start_desk(folder, url_db, [(c, "clerk") for c in clerks] +
                                [("bench-chief", "supervisor")])
        try:
            return await _decide_all(desk, clerks, cases, duplicates)
        finally:
            desk.stop()
    finally:
        await _drop_postgres(name)


async def _decide_all(desk: DeskProcess, clerks: list[str], cases: int, duplicates: int
                      ) -> dict[str, Any]:
    ids = [f"bench-case-{n:04d}" for n in range(cases)]
    async with aiohttp.ClientSession() as s:
        for case_id in ids:
            async with s.post(f"{desk.url}/api/intake", data=_package(desk.kiosk_key, case_id),
                              headers={"X-Tongban-Kiosk": "bench-kiosk"}) as r:
                if r.status != 201:
                    raise BenchFailed(f"intake of {case_id} answered {r.status}")
    sessions = [await _login(desk.url, c) for c in clerks]

    async def decide(session: tuple[aiohttp.ClientSession, str], case_id: str
                     ) -> tuple[int, float, str | None]:
        started = time.perf_counter()
        async with session[0].post(f"{desk.url}/api/cases/{case_id}/decision",
                                   json={"kind": "accept"},
                                   headers={"X-CSRF-Token": session[1]}) as r:
            body = await r.json()
            return (r.status, (time.perf_counter() - started) * 1000,
                    body.get("case_number") if r.status == 200 else None)

    work = [decide(sessions[n % 5], case_id) for n, case_id in enumerate(ids)]
    work += [decide(sessions[5], case_id) for case_id in ids[:duplicates]]
    started = time.perf_counter()
    results = await asyncio.wait_for(asyncio.gather(*work), 120)
    wall = time.perf_counter() - started
    chief = await _login(desk.url, "bench-chief")
    async with chief[0].get(f"{desk.url}/api/audit/verify") as r:
        audit = await r.json()
    for s, _ in [*sessions, chief]:
        await s.close()
    statuses: dict[int, int] = {}
    for status, _, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    numbers = sorted(n for _, _, n in results if n)
    tails = [int(n.rsplit("-", 1)[1]) for n in numbers]
    checks = {
        "only_200_or_409": set(statuses) <= {200, 409},
        "each_case_decided_once": statuses.get(200, 0) == cases,
        "numbers_unique": len(set(numbers)) == len(numbers),
        "numbers_consecutive": tails == list(range(tails[0], tails[0] + len(tails)))
        if tails else False,
        "audit_intact": bool(audit.get("ok")),
    }
    if not all(checks.values()):
        raise BenchFailed(f"decisions: {checks}, answers {statuses}, audit {audit}")
    return {"decisions": len(results), "answers": {str(k): v for k, v in statuses.items()},
            "latency": _summary([ms for _, ms, _ in results]), "wall_s": round(wall, 2),
            "first_number": numbers[0], "last_number": numbers[-1],
            "audit_entries": audit.get("entries"), "checks": checks}


def _commit() -> str:
    """The commit measured, marked when product files differ from it."""
    here = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, text=True,
                              capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, text=True, capture_output=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} (uncommitted changes)" if dirty else head


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
                              "commit": _commit(), "load_average_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="bench-desk-") as tmp:
        a, b = Path(tmp) / "a", Path(tmp) / "b"
        a.mkdir()
        b.mkdir()
        try:
            result["password_load"] = await password_load(a, args.samples)
            result["decisions_postgresql"] = await decisions(b, args.cases, args.duplicates)
            result["ok"] = result["password_load"]["goal_met"]
        except BenchFailed as exc:
            result["ok"] = False
            result["failure"] = str(exc)
    result["load_average_end"] = os.getloadavg()[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=300, help="/healthz requests per phase")
    parser.add_argument("--cases", type=int, default=50, help="cases decided at once")
    parser.add_argument("--duplicates", type=int, default=10,
                        help="second decisions of the same cases (409 expected)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 10 <= args.samples <= 5000 or not 1 <= args.cases <= 500 or \
            not 0 <= args.duplicates <= args.cases:
        parser.error("--samples 10..5000, --cases 1..500, --duplicates 0..cases")
    logs.configure("error")
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:<22} {value}")
    if not result["ok"]:
        print(f"error: {result.get('failure', 'the /healthz goal was not met')}",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
