"""The desk's HTTP API against SQLite and PostgreSQL: login, sessions, CSRF, centre isolation,
signed intake, decisions on the working-day calendar, audit."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from remote_desk.package import Manifest, describe_file, sign
from remote_desk.users import Role, add_user
from remote_desk.workdays import add_working_days
from signaling.protocol import ClientKind
from tests.remote_desk.deskkit import (
    JPEG,
    PASSWORD,
    PDF,
    Desk,
    login,
    make_desk,
    package,
    supplement,
    upload,
)


async def test_login_sets_a_strict_http_only_cookie(desk: Desk) -> None:
    async with aiohttp.ClientSession() as s, s.post(
            f"{desk.url}/api/login", json={"username": "clerk-yj", "password": PASSWORD}) as r:
        assert r.status == 200
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        assert (await r.json())["csrf"]
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]


async def test_secure_cookie_behind_tls(tmp_path: Path, db_url: str) -> None:
    _, server, _ = await make_desk(tmp_path, db_url, behind_tls=True)
    url = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as s, s.post(
            f"{url}/api/login", json={"username": "clerk-yj", "password": PASSWORD}) as r:
        assert r.status == 200 and "Secure" in r.headers["Set-Cookie"]
    await server.close()


async def test_wrong_password_then_rate_limit(desk: Desk) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(5):
            async with s.post(f"{desk.url}/api/login",
                              json={"username": "clerk-yj", "password": "wrong password"}) as r:
                assert r.status == 401
        async with s.post(f"{desk.url}/api/login",
                          json={"username": "clerk-yj", "password": PASSWORD}) as r:
            assert r.status == 429


async def test_no_session_and_no_csrf_are_refused(desk: Desk) -> None:
    async with aiohttp.ClientSession() as s, s.get(f"{desk.url}/api/cases") as r:
        assert r.status == 401
    session, _ = await login(desk, "clerk-yj")
    async with session.post(f"{desk.url}/api/cases/case-0001/decision",
                            json={"kind": "accept"}) as r:
        assert r.status == 403 and (await r.json())["error"] == "csrf"
    await session.close()


async def test_intake_is_signed_idempotent_and_refuses_tampering(desk: Desk) -> None:
    status, body = await upload(desk, package(desk.kiosk_key))
    assert status == 201 and body["status"] == "stored"
    status, body = await upload(desk, package(desk.kiosk_key))  # a retry after a lost reply
    assert status in (200, 409)
    # same case id with another content: a conflict, never a silent overwrite
    status, body = await upload(desk, package(desk.kiosk_key, pdf=b"%PDF-1.4 other"))
    assert status == 409 or body.get("error") == "hash_mismatch"
    forged = package(Ed25519PrivateKey.generate(), case_id="case-0002")
    status, body = await upload(desk, forged)
    assert status == 400 and body["error"] == "bad_signature"
    status, body = await upload(desk, package(desk.kiosk_key, case_id="case-0003"),
                                 kiosk="someone-else")
    assert status == 401
    status, body = await upload(desk, package(desk.kiosk_key, case_id="case-0004",
                                                centre="wujiang"))
    assert status == 403
    stored = list((desk.app.config.files_dir).rglob("*"))
    assert all(b"proxy authorisation" not in p.read_bytes() for p in stored if p.is_file())


async def test_a_retried_upload_is_stored_once(desk: Desk) -> None:
    manifest = Manifest(case_id="case-0100", kiosk_id="shengze-01", centre="yongjia",
                        matter="yb-ydjz-ba", created_at=datetime(2026, 11, 26, tzinfo=UTC),
                        files=[describe_file("page-1.jpg", JPEG, "image/jpeg")])

    def form() -> aiohttp.FormData:
        f = aiohttp.FormData()
        f.add_field("manifest", manifest.model_dump_json())
        f.add_field("signature", sign(manifest, desk.kiosk_key))
        f.add_field("file", JPEG, filename="page-1.jpg", content_type="image/jpeg")
        return f

    first, _ = await upload(desk, form())
    second, body = await upload(desk, form())
    assert (first, second, body["status"]) == (201, 200, "already")


async def test_oversized_upload_is_refused(tmp_path: Path, db_url: str) -> None:
    app, server, key = await make_desk(tmp_path, db_url, max_upload_bytes=1024)
    desk = Desk(str(server.make_url("")).rstrip("/"), app, key)
    status, _ = await upload(desk, package(key))  # about 1.3 KB with its manifest
    assert status == 413
    await server.close()


async def test_clerks_see_only_their_centres_cases(desk: Desk) -> None:
    await upload(desk, package(desk.kiosk_key))
    own, _ = await login(desk, "clerk-yj")
    other, _ = await login(desk, "clerk-wj")
    async with own.get(f"{desk.url}/api/cases/case-0001") as r:
        case = await r.json()
        assert r.status == 200 and [f["name"] for f in case["files"]] == ["page-1.jpg",
                                                                          "letter.pdf"]
    async with own.get(f"{desk.url}/api/cases/case-0001/files/letter.pdf") as r:
        assert r.status == 200 and await r.read() == PDF
    async with other.get(f"{desk.url}/api/cases/case-0001") as r:
        assert r.status == 404
    async with other.get(f"{desk.url}/api/cases/case-0001/files/letter.pdf") as r:
        assert r.status == 404
    async with other.get(f"{desk.url}/api/cases") as r:
        assert (await r.json())["cases"] == []
    await own.close()
    await other.close()


async def test_accept_with_missing_materials_sets_a_working_day_deadline(desk: Desk) -> None:
    await upload(desk, package(desk.kiosk_key))
    session, me = await login(desk, "clerk-yj")
    headers = {"X-CSRF-Token": me["csrf"]}
    async with session.post(f"{desk.url}/api/cases/case-0001/decision", headers=headers,
                            json={"kind": "refuse"}) as r:
        assert r.status == 400  # a refusal needs its reason
    async with session.post(f"{desk.url}/api/cases/case-0001/decision", headers=headers,
                            json={"kind": "accept_pending", "missing": ["参保证明"],
                                  "commitment": "十个工作日内补交", "working_days": 10}) as r:
        assert r.status == 200
        case = await r.json()
    # the centre's day, not UTC's (they differ from 16:00 to 24:00 UTC)
    local = datetime.now(ZoneInfo("Asia/Shanghai"))
    today = local.date()
    assert case["state"] == "accepted_pending"
    assert case["decision"]["deadline"] == add_working_days(today, 10).isoformat()
    assert case["case_number"] == f"yongjia-{today:%Y%m%d}-00001"
    assert f"时间：{local:%Y-%m-%d %H}" in case["decision"]["receipt"]
    assert case["decision"]["kind_zh"] == "容缺受理"
    assert case["case_number"].startswith(f"yongjia-{today:%Y%m%d}-")
    auditor, _ = await login(desk, "auditor")
    async with auditor.get(f"{desk.url}/api/audit/verify") as r:
        check = await r.json()
        assert check["ok"] and check["entries"] >= 4  # logins, intake, decision
    async with session.get(f"{desk.url}/api/audit/verify") as r:
        assert r.status == 403  # clerks do not read the audit trail
    await session.close()
    await auditor.close()


async def test_idle_sessions_expire(tmp_path: Path, db_url: str) -> None:
    app, server, key = await make_desk(tmp_path, db_url, session_idle_minutes=0.002)
    desk = Desk(str(server.make_url("")).rstrip("/"), app, key)
    session, _ = await login(desk, "clerk-yj")
    await asyncio.sleep(0.3)
    async with session.get(f"{desk.url}/api/me") as r:
        assert r.status == 401
    await session.close()
    await server.close()


def test_working_days_follow_the_chinese_calendar() -> None:
    assert add_working_days(date(2026, 11, 26), 10) == date(2026, 12, 10)
    # National Day: October 1-7 off, Saturday October 10 a make-up working day
    assert add_working_days(date(2026, 9, 30), 3) == date(2026, 10, 10)
    assert add_working_days(date(2026, 9, 30), 10) == date(2026, 10, 20)


async def test_supervisor_overdue_list_and_reassignment(desk: Desk) -> None:
    async with desk.app.db() as db:
        await add_user(db, "chief", "科长", PASSWORD, Role.SUPERVISOR, ["yongjia"])
        await db.commit()
    await upload(desk, package(desk.kiosk_key))
    clerk, me = await login(desk, "clerk-yj")
    async with clerk.post(f"{desk.url}/api/cases/case-0001/decision",
                          headers={"X-CSRF-Token": me["csrf"]},
                          json={"kind": "accept_pending", "missing": ["参保证明"],
                                "commitment": "补交", "working_days": 1}) as r:
        decided = await r.json()
        assert "请于" in decided["decision"]["receipt"] and "受理编号" in \
            decided["decision"]["receipt"]
    async with desk.app.db() as db:  # time passes: the deadline is behind us
        from remote_desk.models import Case

        case = await db.get(Case, "case-0001")
        assert case is not None and case.decision is not None
        case.decision = {**case.decision, "deadline": "2026-01-05"}
        await db.commit()
    chief, chief_me = await login(desk, "chief")
    async with chief.get(f"{desk.url}/api/overdue") as r:
        assert [c["id"] for c in (await r.json())["overdue"]] == ["case-0001"]
    async with clerk.get(f"{desk.url}/api/overdue") as r:
        assert r.status == 403
    async with chief.post(f"{desk.url}/api/cases/case-0001/assign",
                          headers={"X-CSRF-Token": chief_me["csrf"]},
                          json={"clerk": "clerk-wj"}) as r:
        assert r.status == 400  # not a clerk of this centre
    async with chief.post(f"{desk.url}/api/cases/case-0001/assign",
                          headers={"X-CSRF-Token": chief_me["csrf"]},
                          json={"clerk": "clerk-yj"}) as r:
        assert (await r.json())["assigned_to"] == "clerk-yj"
    auditor, _ = await login(desk, "auditor")
    async with auditor.get(f"{desk.url}/api/audit?limit=50") as r:
        actions = [e["action"] for e in (await r.json())["entries"]]
        assert {"intake", "decide", "assign", "login"} <= set(actions)
    async with clerk.get(f"{desk.url}/api/audit") as r:
        assert r.status == 403
    for s in (clerk, chief, auditor):
        await s.close()


async def test_disabling_an_account_ends_its_sessions(desk: Desk,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import remote_desk.app

    monkeypatch.setattr(remote_desk.app, "USER_RECHECK_SECONDS", 0.0)
    session, _ = await login(desk, "clerk-yj")
    async with session.get(f"{desk.url}/api/me") as r:
        assert r.status == 200
    from remote_desk.users import set_disabled

    async with desk.app.db() as db:
        await set_disabled(db, "clerk-yj")
        await db.commit()
    async with session.get(f"{desk.url}/api/me") as r:
        assert r.status == 401 and (await r.json())["message"] == "this account is disabled"
    await session.close()


async def test_supplements_add_pages_once_and_only_before_the_decision(desk: Desk) -> None:
    assert (await upload(desk, package(desk.kiosk_key)))[0] == 201
    # a re-scan during the call: added to the case; a retry of it is "already"
    status, body = await upload(desk, supplement(desk.kiosk_key, 1, "id_copy-r1.jpg"))
    assert (status, body["status"]) == (201, "stored")
    status, body = await upload(desk, supplement(desk.kiosk_key, 1, "id_copy-r1.jpg"))
    assert (status, body["status"]) == (200, "already")
    # the same name with other bytes is a conflict, never an overwrite
    other = b"\xff\xd8\xff\xe0" + b"other" * 50
    status, body = await upload(desk, supplement(desk.kiosk_key, 2, "id_copy-r1.jpg", other))
    assert status == 409 and body["error"] == "conflict"
    # a case that does not exist
    status, _ = await upload(desk, supplement(desk.kiosk_key, 1, "x-r1.jpg",
                                                case_id="case-0999"))
    assert status == 404
    session, me = await login(desk, "clerk-yj")
    async with session.get(f"{desk.url}/api/cases/case-0001") as r:
        files = [f["name"] for f in (await r.json())["files"]]
    assert files.count("id_copy-r1.jpg") == 1 and len(files) == 3
    async with session.post(f"{desk.url}/api/cases/case-0001/decision",
                            json={"kind": "accept"},
                            headers={"X-CSRF-Token": me["csrf"]}) as r:
        assert r.status == 200
    await session.close()
    status, body = await upload(desk, supplement(desk.kiosk_key, 3, "id_copy-r3.jpg"))
    assert status == 409 and body["error"] == "decided"


async def test_another_kiosk_cannot_add_to_a_case(desk: Desk, tmp_path: Path) -> None:
    assert (await upload(desk, package(desk.kiosk_key)))[0] == 201
    other = desk.app.kiosks.create("shengze-02", ClientKind.KIOSK, site="shengze")
    status, _ = await upload(desk, supplement(other, 1, "id_copy-r1.jpg",
                                                kiosk="shengze-02"), kiosk="shengze-02")
    assert status == 404
