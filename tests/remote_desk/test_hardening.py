"""The desk's access and input hardening (issue 12), through the real desk on loopback: the
clerk socket tied to its session and role, malformed requests answered 4xx in JSON with
nothing stored, password checks off the event loop and the login limits, per-route body
limits with the intake streamed to disk, and the security headers on every response."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select, update

from remote_desk.app import INCOMING, DeskApp, SessionEnd
from remote_desk.blobs import new_key, parse_key
from remote_desk.config import DeskConfig
from remote_desk.db import upgrade
from remote_desk.hublink import HubLink
from remote_desk.models import AuditEntry, Case, CaseFile, User
from remote_desk.package import Manifest, describe_file, sign
from remote_desk.users import (
    PASSWORD_THREAD_NICENESS,
    LoginLimiter,
    PasswordChecks,
    Role,
    add_user,
    set_disabled,
)
from signaling import protocol as p
from signaling.client import HubClient
from signaling.hub import Hub
from signaling.protocol import ClientKind
from tests.remote_desk.deskkit import JPEG, PASSWORD, Desk, login, make_desk, package, upload
from tests.signaling.conftest import start_hub
from tests.tls import self_signed

# -- 1. the clerk socket belongs to its session and role ----------------------------------------


@dataclass
class World:
    hub: Hub
    base: str
    desk: DeskApp
    kiosk: HubClient


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    """A hub, a desk (c1, c2) that checks its sessions every 0.3 s with clerk-a (c1), a
    supervisor (c1) and an auditor (c1), and kiosk k1 connected to the hub."""
    monkeypatch.setenv("TB_TEST_TURN_SECRET", "secret")
    hub, runner, hub_url = await start_hub(tmp_path)
    desk_key = hub.credentials.create("desk-1", ClientKind.DESK, centres=["c1", "c2"])
    kiosk_key = hub.credentials.create("k1", ClientKind.KIOSK, site="s1")
    url = f"sqlite:///{tmp_path / 'desk.db'}"
    await asyncio.to_thread(upgrade, url)
    desk = DeskApp(DeskConfig(database=url, files_dir=tmp_path / "files", centres=["c1", "c2"],
                              kiosk_credentials=tmp_path / "creds.json",
                              session_check_seconds=0.3),
                   files_key=parse_key(new_key()))
    async with desk.db() as db:
        await add_user(db, "clerk-a", "甲", PASSWORD, Role.CLERK, ["c1"])
        await add_user(db, "chief", "丙", PASSWORD, Role.SUPERVISOR, ["c1"])
        await add_user(db, "auditor", "丁", PASSWORD, Role.AUDITOR, ["c1"])
        await db.commit()
    desk.hub = HubLink(HubClient(hub_url, "desk-1", ClientKind.DESK, desk_key,
                                 reconnection=False), ["c1", "c2"])
    await desk.hub.start()
    server = TestServer(desk.app, host="127.0.0.1")
    await server.start_server()
    kiosk = HubClient(hub_url, "k1", ClientKind.KIOSK, kiosk_key, reconnection=False)
    await kiosk.connect()
    yield World(hub, str(server.make_url("")).rstrip("/"), desk, kiosk)
    with contextlib.suppress(Exception):
        await kiosk.close()
    await server.close()
    await runner.cleanup()


class Browser:
    def __init__(self, session: aiohttp.ClientSession, csrf: str,
                 ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session, self.csrf, self.ws = session, csrf, ws

    async def send(self, event: str, data: dict[str, Any]) -> None:
        await self.ws.send_json({"event": event, "data": {"v": 1, **data}})

    async def next(self, event: str, timeout: float = 5) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            while True:
                msg = await self.ws.receive_json()
                if msg["event"] == event:
                    return msg["data"]  # type: ignore[no-any-return]
        return await asyncio.wait_for(wait(), timeout)

    async def closed(self, timeout: float = 5) -> tuple[int | None, str]:
        """Wait for the desk to close the socket: (close code, reason)."""
        async def wait() -> tuple[int | None, str]:
            while True:
                msg = await self.ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                aiohttp.WSMsgType.CLOSED):
                    return self.ws.close_code, str(msg.extra or "")
        return await asyncio.wait_for(wait(), timeout)

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


async def _log_in(base: str, user: str) -> tuple[aiohttp.ClientSession, str]:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post(f"{base}/api/login",
                            json={"username": user, "password": PASSWORD}) as r:
        assert r.status == 200, await r.text()
        return session, str((await r.json())["csrf"])


async def _browser(base: str, user: str) -> Browser:
    session, csrf = await _log_in(base, user)
    return Browser(session, csrf, await session.ws_connect(f"{base}/ws?csrf={csrf}"))


async def _in_call(w: World, clerk: Browser, clerk_id: str = "clerk-a") -> str:
    """The clerk takes k1's citizen; returns the call id (the kiosk has its call.start)."""
    await clerk.send("clerk.presence", {"clerk_id": clerk_id, "centre": "c1",
                                        "matters": ["m1"], "available": True})
    await asyncio.sleep(0.2)
    await w.kiosk.send("ticket.request", p.TicketRequest(centre="c1", matter="m1",
                                                         case_id="case-0001"))
    offered = await clerk.next("ticket.offered")
    await clerk.send("ticket.accept", {"ticket_id": offered["ticket_id"],
                                       "clerk_id": clerk_id})
    start = await clerk.next("call.start")
    await w.kiosk.next("call.start")
    return str(start["call_id"])


async def _signed_out(w: World, clerk_id: str, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await w.hub.store.clerk(f"desk-1/{clerk_id}") is None:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_an_auditor_cannot_open_the_clerk_socket(world: World) -> None:
    session, csrf = await _log_in(world.base, "auditor")
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await session.ws_connect(f"{world.base}/ws?csrf={csrf}")
    assert err.value.status == 403
    await session.close()
    chief = await _browser(world.base, "chief")  # supervisors serve citizens
    await chief.send("clerk.presence", {"clerk_id": "chief", "centre": "c1", "matters": ["m1"],
                                        "available": True})
    await asyncio.sleep(0.3)
    assert await world.hub.store.clerk("desk-1/chief") is not None
    await chief.close()


async def test_logout_closes_the_socket_ends_the_call_and_signs_the_clerk_out(
        world: World) -> None:
    clerk = await _browser(world.base, "clerk-a")
    call_id = await _in_call(world, clerk)
    world.kiosk.drain("ticket.update")
    async with clerk.session.post(f"{world.base}/api/logout",
                                  headers={"X-CSRF-Token": clerk.csrf}) as r:
        assert r.status == 200
    code, reason = await clerk.closed()
    assert (code, reason) == (SessionEnd.LOGGED_OUT.code, "logged_out")
    ended = await world.kiosk.next("call.ended")
    assert ended.call_id == call_id and ended.reason is p.CallEndReason.HANGUP
    assert await _signed_out(world, "clerk-a")
    await asyncio.sleep(0.3)
    states = [u.state for u in world.kiosk.drain("ticket.update")]
    assert states and states[-1] is p.TicketState.WAITING  # at the front for the next clerk
    await clerk.session.close()


async def test_logout_hands_an_unanswered_offer_back_and_signs_the_clerk_out(
        world: World) -> None:
    clerk = await _browser(world.base, "clerk-a")
    await clerk.send("clerk.presence", {"clerk_id": "clerk-a", "centre": "c1",
                                        "matters": ["m1"], "available": True})
    await asyncio.sleep(0.2)
    await world.kiosk.send("ticket.request", p.TicketRequest(centre="c1", matter="m1",
                                                             case_id="case-0001"))
    offered = await clerk.next("ticket.offered")
    async with clerk.session.post(f"{world.base}/api/logout",
                                  headers={"X-CSRF-Token": clerk.csrf}) as r:
        assert r.status == 200
    assert (await clerk.closed())[0] == SessionEnd.LOGGED_OUT.code
    assert await _signed_out(world, "clerk-a")  # the hub refuses it while an offer is held
    ticket = await world.hub.store.ticket(offered["ticket_id"])
    assert ticket is not None and ticket.state is p.TicketState.WAITING
    await clerk.session.close()


async def test_a_disabled_account_loses_its_socket_and_the_call_within_seconds(
        world: World) -> None:
    clerk = await _browser(world.base, "clerk-a")
    call_id = await _in_call(world, clerk)
    async with world.desk.db() as db:
        await set_disabled(db, "clerk-a")
        await db.commit()
    code, reason = await clerk.closed(timeout=3)
    assert (code, reason) == (SessionEnd.DISABLED.code, "account_disabled")
    ended = await world.kiosk.next("call.ended")
    assert ended.call_id == call_id and ended.reason is p.CallEndReason.FAILED
    assert await _signed_out(world, "clerk-a")
    # nothing the old page sends reaches the kiosk any more
    with contextlib.suppress(Exception):
        await clerk.send("call.command", {"call_id": call_id, "name": "end", "args": {}})
    await asyncio.sleep(0.3)
    assert not world.kiosk.drain("call.command")
    async with clerk.session.get(f"{world.base}/api/me") as r:
        assert r.status == 401
    await clerk.session.close()


async def test_a_role_change_closes_the_socket(world: World) -> None:
    clerk = await _browser(world.base, "clerk-a")
    await clerk.send("clerk.presence", {"clerk_id": "clerk-a", "centre": "c1",
                                        "matters": ["m1"], "available": True})
    await asyncio.sleep(0.3)
    assert await world.hub.store.clerk("desk-1/clerk-a") is not None
    async with world.desk.db() as db:
        await db.execute(update(User).where(User.username == "clerk-a")
                         .values(role=Role.AUDITOR.value))
        await db.commit()
    code, reason = await clerk.closed(timeout=3)
    assert (code, reason) == (SessionEnd.CHANGED.code, "account_changed")
    assert await _signed_out(world, "clerk-a")
    await clerk.session.close()


async def test_an_idle_session_expires_and_closes_its_socket_but_not_during_a_call(
        world: World) -> None:
    world.desk.config.session_idle_minutes = 1.0 / 60  # one second
    clerk = await _browser(world.base, "clerk-a")
    await _in_call(world, clerk)
    await asyncio.sleep(2.0)  # talking: not idle
    assert clerk.ws.closed is False
    idle = await _browser(world.base, "chief")
    code, reason = await idle.closed(timeout=4)
    assert (code, reason) == (SessionEnd.EXPIRED.code, "session_expired")
    async with idle.session.get(f"{world.base}/api/me") as r:
        assert r.status == 401
    await idle.session.close()
    await clerk.close()


# -- 2. malformed requests: a 4xx in JSON, nothing stored ----------------------------------------

BOUNDARY = "tbBOUNDARY"


def _multipart(*parts: tuple[str, bytes], boundary: str = BOUNDARY) -> bytes:
    body = b""
    for headers, data in parts:
        body += f"--{boundary}\r\n{headers}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def _signed_parts(key: Any, signature: bytes | None = None, page: bytes = JPEG
                  ) -> list[tuple[str, bytes]]:
    from datetime import UTC, datetime

    manifest = Manifest(case_id="case-0042", kiosk_id="shengze-01", centre="yongjia",
                        matter="yb-ydjz-ba", created_at=datetime.now(UTC),
                        files=[describe_file("page-1.jpg", page, "image/jpeg")])
    return [('Content-Disposition: form-data; name="manifest"',
             manifest.model_dump_json().encode()),
            ('Content-Disposition: form-data; name="signature"',
             signature if signature is not None else sign(manifest, key).encode()),
            ('Content-Disposition: form-data; name="file"; filename="page-1.jpg"\r\n'
             'Content-Type: image/jpeg', page)]


MALFORMED = ["intake-no-boundary", "intake-json", "intake-no-content-type",
             "intake-truncated", "intake-bad-part-header", "intake-signature-not-utf8",
             "login-deep-json", "login-not-utf8", "login-not-an-object", "audit-limit-abc",
             "audit-limit-huge", "decision-deep-json", "assign-not-json"]


@pytest.mark.parametrize("case", MALFORMED)
async def test_malformed_requests_get_a_json_4xx_and_store_nothing(desk: Desk,
                                                                   case: str) -> None:
    kiosk = {"X-Tongban-Kiosk": "shengze-01"}
    good = _multipart(*_signed_parts(desk.kiosk_key))
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    requests: dict[str, tuple[str, str, dict[str, str], bytes]] = {
        "intake-no-boundary": ("POST", "/api/intake",
                               {**kiosk, "Content-Type": "multipart/form-data"}, good),
        "intake-json": ("POST", "/api/intake", {**kiosk, "Content-Type": "application/json"},
                        b'{"manifest": {}}'),
        "intake-no-content-type": ("POST", "/api/intake", kiosk, good),
        "intake-truncated": ("POST", "/api/intake", {
            **kiosk, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            good[:len(good) // 2]),
        "intake-bad-part-header": ("POST", "/api/intake", {
            **kiosk, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            _multipart(("Content-Disposition form-data name manifest\x00", b"{}"))),
        "intake-signature-not-utf8": ("POST", "/api/intake", {
            **kiosk, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            _multipart(*_signed_parts(desk.kiosk_key, signature=b"\xff\xfe\x80"))),
        "login-deep-json": ("POST", "/api/login", {"Content-Type": "application/json"},
                            b'{"username": ' + deep[:8000] + b"}"),
        "login-not-utf8": ("POST", "/api/login", {"Content-Type": "application/json"},
                           b'{"username": "\xff", "password": "x"}'),
        "login-not-an-object": ("POST", "/api/login", {"Content-Type": "application/json"},
                                b'["clerk-yj", "x"]'),
        "audit-limit-abc": ("GET", "/api/audit?limit=abc", {}, b""),
        "audit-limit-huge": ("GET", "/api/audit?limit=99999999999999999999", {}, b""),
        "decision-deep-json": ("POST", "/api/cases/case-0042/decision",
                               {"Content-Type": "application/json"}, deep[:8000]),
        "assign-not-json": ("POST", "/api/cases/case-0042/assign",
                            {"Content-Type": "text/plain"}, b"clerk-yj"),
    }
    method, path, headers, body = requests[case]
    user = "auditor" if path.startswith("/api/audit") else "clerk-yj"
    session, me = await login(desk, user)
    async with session.request(method, f"{desk.url}{path}", data=body, skip_auto_headers=(
            "Content-Type",), headers={**headers, "X-CSRF-Token": me["csrf"]}) as r:
        assert 400 <= r.status < 500, (r.status, await r.text())
        assert r.content_type == "application/json"
        answer = await r.json()
        assert answer["error"] and answer["message"]
    await session.close()
    async with desk.app.db() as db:
        assert (await db.execute(select(func.count()).select_from(Case))).scalar_one() == 0
        assert (await db.execute(select(func.count()).select_from(CaseFile))).scalar_one() == 0
        actions = set((await db.execute(select(AuditEntry.action))).scalars())
    assert actions <= {"login"}
    files = desk.app.config.files_dir
    assert not [f for f in files.rglob("*") if f.is_file()] if files.exists() else True


# -- 3. passwords off the loop; limits per name at an address and per address -------------------

async def test_password_checks_run_on_worker_threads_not_the_loop() -> None:
    checks = PasswordChecks(workers=2)
    seen: list[str] = []
    real = PasswordChecks._verify

    def spy(password_hash: str, password: str) -> bool:
        niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen.append(f"{threading.current_thread().name} nice {niceness}")
        return real(password_hash, password)

    checks._verify = spy  # type: ignore[method-assign]
    results = await asyncio.gather(*(checks.verify(None, "guess") for _ in range(4)))
    checks.close()
    assert results == [False] * 4
    assert seen and all(name.startswith("argon2") for name in seen)
    # they yield the CPU to the event loop (whose thread keeps its own priority)
    expected = max(os.getpriority(os.PRIO_PROCESS, 0), PASSWORD_THREAD_NICENESS)
    assert all(name.endswith(f"nice {expected}") for name in seen), seen


def test_login_limiter_rule() -> None:
    now = [1000.0]
    limiter = LoginLimiter(per_name=3, per_address=5, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        limiter.attempt("clerk", "10.0.0.1")
    assert limiter.retry_after("clerk", "10.0.0.1") == 60  # that name, at that address
    assert limiter.retry_after("clerk", "10.0.0.2") == 0  # never anywhere else
    assert limiter.retry_after("other", "10.0.0.1") == 0
    limiter.attempt("a", "10.0.0.1")
    limiter.attempt("b", "10.0.0.1")  # five failures from the address: spraying
    assert limiter.retry_after("someone", "10.0.0.1") == 60
    now[0] += 61
    assert limiter.retry_after("clerk", "10.0.0.1") == 0
    at = limiter.attempt("clerk", "10.0.0.1")
    limiter.succeeded("clerk", "10.0.0.1", at)
    limiter.prune()
    assert limiter.retry_after("clerk", "10.0.0.1") == 0


async def _post_login(url: str, user: str, password: str, source: str = "127.0.0.1"
                      ) -> tuple[int, dict[str, Any], dict[str, str]]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as s, s.post(
            f"{url}/api/login", json={"username": user, "password": password}) as r:
        return r.status, await r.json(), dict(r.headers)


async def test_a_name_locked_at_one_address_still_logs_in_from_another(desk: Desk) -> None:
    for _ in range(5):
        status, _, _ = await _post_login(desk.url, "clerk-yj", "wrong password", "127.0.0.3")
        assert status == 401
    status, body, headers = await _post_login(desk.url, "clerk-yj", PASSWORD, "127.0.0.3")
    assert status == 429 and body["error"] == "rate_limited"
    assert int(headers["Retry-After"]) == body["retry_after_s"] > 0
    assert "try again in" in body["message"]
    status, body, _ = await _post_login(desk.url, "clerk-yj", PASSWORD, "127.0.0.4")
    assert status == 200 and body["username"] == "clerk-yj"


async def test_spraying_many_names_from_one_address_is_limited(tmp_path: Path,
                                                               db_url: str) -> None:
    _, server, _ = await make_desk(tmp_path, db_url, login_address_attempts=6)
    url = str(server.make_url("")).rstrip("/")
    for n in range(6):
        status, _, _ = await _post_login(url, f"guess-{n}", "wrong password", "127.0.0.5")
        assert status == 401
    status, body, headers = await _post_login(url, "clerk-yj", PASSWORD, "127.0.0.5")
    assert status == 429 and "Retry-After" in headers and body["retry_after_s"] > 0
    status, _, _ = await _post_login(url, "clerk-yj", PASSWORD, "127.0.0.6")
    assert status == 200
    await server.close()


# -- 4. per-route body limits; the intake streamed to disk ---------------------------------------

async def test_a_large_login_body_is_refused_before_it_is_read(desk: Desk) -> None:
    host, port = desk.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    declared = 100 * 1024 * 1024
    writer.write(f"POST /api/login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
                 f"\r\nContent-Length: {declared}\r\n\r\n".encode())
    sent = 0
    head = b""
    try:
        for _ in range(64):  # at most 4 MiB of the 100 MiB, while the answer is awaited
            with contextlib.suppress(ConnectionError):
                writer.write(b" " * 65536)
                await writer.drain()
                sent += 65536
            with contextlib.suppress(TimeoutError):
                head = await asyncio.wait_for(reader.read(4096), 0.05)
            if head:
                break
        assert head.startswith(b"HTTP/1.1 413"), head[:80]
        assert sent < declared // 20
        status_body = head.split(b"\r\n\r\n", 1)[1]
        assert json.loads(status_body)["error"] == "too_large"
        # and the desk closes the connection instead of reading the rest
        rest = await asyncio.wait_for(reader.read(), 5)
        assert b"HTTP/1.1" not in rest
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def test_a_chunked_login_body_over_the_limit_is_a_json_413(desk: Desk) -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b" " * 8192

    async with aiohttp.ClientSession() as s, s.post(
            f"{desk.url}/api/login", data=body(),
            headers={"Content-Type": "application/json"}) as r:
        assert r.status == 413 and (await r.json())["error"]


async def test_an_intake_over_its_limit_is_refused_and_leaves_nothing(tmp_path: Path,
                                                                      db_url: str) -> None:
    app, server, key = await make_desk(tmp_path, db_url, max_upload_bytes=64 * 1024)
    assert key is not None
    desk = Desk(str(server.make_url("")).rstrip("/"), app, key)
    big = JPEG + b"x" * (128 * 1024)
    form = package(key, case_id="case-0077", extra=())
    form.add_field("file", big, filename="page-2.jpg", content_type="image/jpeg")

    async def chunked() -> AsyncIterator[bytes]:  # no declared length: counted as it streams
        yield (JPEG + b"y" * (32 * 1024))
        for _ in range(4):
            yield b"y" * (32 * 1024)

    status, body = await upload(desk, form)
    assert status == 413 and body["error"] == "too_large"
    async with aiohttp.ClientSession() as s, s.post(
            f"{desk.url}/api/intake", data=chunked(), headers={
                "X-Tongban-Kiosk": "shengze-01",
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}) as r:
        assert r.status in (400, 413) and (await r.json())["error"]
    async with app.db() as db:
        assert (await db.execute(select(func.count()).select_from(Case))).scalar_one() == 0
    assert not [f for f in app.config.files_dir.rglob("*") if f.is_file()]
    await server.close()


async def test_an_accepted_intake_leaves_no_temporary_file(desk: Desk) -> None:
    status, _ = await upload(desk, package(desk.kiosk_key))
    assert status == 201
    incoming = desk.app.config.files_dir / INCOMING
    assert not incoming.exists() or not list(incoming.rglob("*"))


# -- 5. Secure, HSTS and the security headers on every response ----------------------------------

HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy",
           "Cache-Control")


async def test_over_tls_the_cookie_is_secure_and_hsts_is_sent(tmp_path: Path,
                                                              db_url: str) -> None:
    cert, key_file = self_signed(tmp_path)
    app = DeskApp(DeskConfig(database=db_url, files_dir=tmp_path / "files",
                             kiosk_credentials=tmp_path / "creds.json", centres=["yongjia"],
                             tls_cert=cert, tls_key=key_file), files_key=parse_key(new_key()))
    async with app.db() as db:
        await add_user(db, "clerk-yj", "永嘉窗口", PASSWORD, Role.CLERK, ["yongjia"])
        await db.commit()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key_file)
    server = TestServer(app.app, host="127.0.0.1")
    await server.start_server(ssl=server_ctx)
    url = f"https://127.0.0.1:{server.port}"
    client_ctx = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.post(f"{url}/api/login",
                          json={"username": "clerk-yj", "password": PASSWORD}) as r:
            assert r.status == 200
            assert "Secure" in r.headers["Set-Cookie"]
            assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        async with s.get(f"{url}/api/no-such-thing") as r:
            assert r.status == 404 and "Strict-Transport-Security" in r.headers
    await server.close()


async def test_every_response_carries_the_security_headers(desk: Desk) -> None:
    session, _ = await login(desk, "clerk-yj")
    async with aiohttp.ClientSession() as anonymous:
        checks = [
            (anonymous.get(f"{desk.url}/api/cases"), 401),
            (session.get(f"{desk.url}/api/cases/nope"), 404),
            (session.get(f"{desk.url}/api/no-such-thing"), 404),
            (anonymous.get(f"{desk.url}/no-such-page"), 401),
            (anonymous.put(f"{desk.url}/api/login"), 405),
            (anonymous.post(f"{desk.url}/api/login", data=b"x" * 20000,
                            headers={"Content-Type": "application/json"}), 413),
            (anonymous.get(f"{desk.url}/"), 200),
            (anonymous.get(f"{desk.url}/static/desk.js"), 200),
        ]
        for request, status in checks:
            async with request as r:
                assert r.status == status, (r.url, r.status)
                for name in HEADERS:
                    assert name in r.headers, (r.url, name)
                assert "Strict-Transport-Security" not in r.headers  # plain HTTP here
                if status >= 400:
                    assert r.content_type == "application/json", r.url
    await session.close()


async def test_an_internal_error_is_a_json_500_with_the_headers(desk: Desk) -> None:
    assert (await upload(desk, package(desk.kiosk_key)))[0] == 201
    session, _ = await login(desk, "clerk-yj")
    async with desk.app.engine.begin() as conn:  # the store loses a table under the desk
        await conn.exec_driver_sql("DROP TABLE case_files")
    async with session.get(f"{desk.url}/api/cases/case-0001") as r:
        assert r.status == 500
        assert (await r.json())["error"] == "internal"
        for name in HEADERS:
            assert name in r.headers
    await session.close()


async def test_the_disabled_user_is_refused_at_login(desk: Desk) -> None:
    async with desk.app.db() as db:
        await set_disabled(db, "clerk-yj")
        await db.commit()
    status, body, _ = await _post_login(desk.url, "clerk-yj", PASSWORD)
    assert status == 401 and body["error"] == "bad_login"


async def test_the_intake_streams_sealed_to_a_file_under_the_data_directory(desk: Desk) -> None:
    page = JPEG + bytes(range(256)) * 4096  # 1 MiB
    body = _multipart(*_signed_parts(desk.kiosk_key, page=page))
    cut = body.index(page) + len(page) // 2  # half the file has been sent
    arrived = asyncio.Event()

    async def slowly() -> AsyncIterator[bytes]:
        yield body[:cut]
        await asyncio.wait_for(arrived.wait(), 10)
        yield body[cut:]

    async def watch() -> tuple[int, bool]:
        """How much of the page was on disk, and whether any of it was readable there."""
        incoming = desk.app.config.files_dir / INCOMING
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            parts = [f for f in incoming.rglob("*") if f.is_file()] if incoming.exists() else []
            if parts and parts[0].stat().st_size > 0:
                spooled = parts[0].read_bytes()
                arrived.set()
                return len(spooled), bytes(range(64, 128)) in spooled
            await asyncio.sleep(0.02)
        arrived.set()
        return 0, False

    async with aiohttp.ClientSession() as s:
        watcher = asyncio.create_task(watch())
        async with s.post(f"{desk.url}/api/intake", data=slowly(), headers={
                "X-Tongban-Kiosk": "shengze-01",
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}) as r:
            assert r.status == 201, await r.text()
        size, readable = await watcher
        assert 0 < size < len(page)  # on disk while it was still arriving
        assert not readable  # but sealed: papers are never at rest in the clear
    incoming = desk.app.config.files_dir / INCOMING
    assert not [f for f in incoming.rglob("*") if f.is_file()]


async def test_password_checks_beyond_the_queue_are_refused_at_once() -> None:
    from remote_desk.users import ChecksBusy

    checks = PasswordChecks(workers=1, waiting=1)
    results = await asyncio.gather(*(checks.verify(None, "guess") for _ in range(4)),
                                   return_exceptions=True)
    checks.close()
    assert sum(isinstance(r, ChecksBusy) for r in results) == 2
    assert results.count(False) == 2
