"""The case service through the desk's real API, on SQLite and PostgreSQL: corrected papers
return a case from 补正, a transferred case follows the citizen to its new centre, and a busy
store answers 409 (clerks) or 503 (kiosks), never 500."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from remote_desk.db import make_engine, upgrade
from remote_desk.users import Role, add_user
from signaling.protocol import ClientKind
from tests.remote_desk.deskkit import (
    PASSWORD,
    Desk,
    login,
    make_desk,
    package,
    supplement,
    upload,
)

Clerk = tuple[aiohttp.ClientSession, dict[str, Any]]


@pytest.fixture
async def two_centres(tmp_path: Path, db_url: str) -> AsyncIterator[Desk]:
    """One desk serving yongjia and lucheng, with clerk-lc at lucheng."""
    app, server, key = await make_desk(tmp_path, db_url, centres=("yongjia", "lucheng"))
    assert key is not None
    async with app.db() as db:
        await add_user(db, "clerk-lc", "鹿城窗口", PASSWORD, Role.CLERK, ["lucheng"])
        await db.commit()
    yield Desk(str(server.make_url("")).rstrip("/"), app, key)
    await server.close()


async def _decide(desk: Desk, clerk: Clerk, case_id: str, kind: str,
                  **extra: Any) -> tuple[int, dict[str, Any]]:
    session, me = clerk
    async with session.post(f"{desk.url}/api/cases/{case_id}/decision",
                            headers={"X-CSRF-Token": me["csrf"]},
                            json={"kind": kind, **extra}) as r:
        return r.status, await r.json()


async def _case(desk: Desk, clerk: Clerk, case_id: str) -> tuple[int, dict[str, Any]]:
    async with clerk[0].get(f"{desk.url}/api/cases/{case_id}") as r:
        return r.status, await r.json()


async def _audit_actions(desk: Desk) -> list[tuple[str, str, str]]:
    auditor, _ = await login(desk, "auditor")
    async with auditor.get(f"{desk.url}/api/audit?limit=500") as r:
        entries = (await r.json())["entries"]
    await auditor.close()
    return [(e["action"], e["target"], e["detail"]) for e in reversed(entries)]


async def test_corrected_pages_return_a_case_to_received(desk: Desk) -> None:
    assert (await upload(desk, package(desk.kiosk_key)))[0] == 201
    clerk = await login(desk, "clerk-yj")
    status, case = await _decide(desk, clerk, "case-0001", "corrections",
                                 reason="委托书缺少签名")
    assert (status, case["state"], case["case_number"]) == (200, "corrections", None)
    status, body = await _decide(desk, clerk, "case-0001", "accept")
    assert status == 409 and "already decided (corrections)" in body["message"]
    # the citizen signs the letter again; the kiosk adds the new page
    status, body = await upload(desk, supplement(desk.kiosk_key, 1, "letter-signed.jpg"))
    assert (status, body["status"]) == (201, "stored")
    status, case = await _case(desk, clerk, "case-0001")
    assert case["state"] == "received" and len(case["files"]) == 3
    status, case = await _decide(desk, clerk, "case-0001", "accept")
    assert status == 200 and case["state"] == "accepted" and case["case_number"]
    await clerk[0].close()


async def test_a_corrected_package_sent_again_returns_a_case_to_received(desk: Desk) -> None:
    assert (await upload(desk, package(desk.kiosk_key)))[0] == 201
    # sent again with a page more while nobody asked for corrections: refused as before
    status, body = await upload(desk, package(desk.kiosk_key, extra=("letter-signed.jpg",)))
    assert (status, body["error"]) == (409, "conflict")
    clerk = await login(desk, "clerk-yj")
    assert (await _decide(desk, clerk, "case-0001", "corrections", reason="缺签名"))[0] == 200
    corrected = datetime.now(UTC)
    for answer in ((201, "stored"), (200, "already")):  # and a retry of it
        status, body = await upload(desk, package(desk.kiosk_key, extra=("letter-signed.jpg",),
                                                  created_at=corrected))
        assert (status, body["status"]) == answer
    status, case = await _case(desk, clerk, "case-0001")
    assert case["state"] == "received"
    assert sorted(f["name"] for f in case["files"]) == ["letter-signed.jpg", "letter.pdf",
                                                        "page-1.jpg"]
    await clerk[0].close()


async def test_a_transferred_case_follows_the_citizen_to_its_new_centre(
        two_centres: Desk) -> None:
    desk = two_centres
    assert (await upload(desk, package(desk.kiosk_key)))[0] == 201
    # not transferred (yet): the same case id at another centre is a conflict
    status, body = await upload(desk, package(desk.kiosk_key, centre="lucheng"))
    assert (status, body["error"]) == (409, "conflict")
    assert await desk.app.cases.mark_transferred("case-0001", "lucheng", "clerk-yj")
    other = desk.app.kiosks.create("shengze-02", ClientKind.KIOSK, site="shengze")
    status, _ = await upload(desk, package(other, kiosk="shengze-02", centre="lucheng"),
                             kiosk="shengze-02")
    assert status == 409  # only the kiosk that sent the case may move it
    sent = datetime.now(UTC)
    for answer in ((201, "transferred"), (200, "already")):  # and a retry of it
        status, body = await upload(desk, package(desk.kiosk_key, centre="lucheng",
                                                  extra=("bank-card.jpg",), created_at=sent))
        assert (status, body["status"]) == answer
    yj, lc = await login(desk, "clerk-yj"), await login(desk, "clerk-lc")
    assert (await _case(desk, yj, "case-0001"))[0] == 404  # no longer yongjia's
    status, case = await _case(desk, lc, "case-0001")
    assert (status, case["centre"], case["state"]) == (200, "lucheng", "received")
    assert sorted(f["name"] for f in case["files"]) == ["bank-card.jpg", "letter.pdf",
                                                        "page-1.jpg"]
    status, case = await _decide(desk, lc, "case-0001", "accept")
    assert status == 200 and case["case_number"].startswith("lucheng-")
    assert case["case_number"].endswith("-00001")
    actions = await _audit_actions(desk)
    assert ("transfer", "case-0001", "lucheng") in actions
    assert any(a == "transfer_in" and t == "case-0001" and "from yongjia" in d
               for a, t, d in actions)
    for session in (yj, lc):
        await session[0].close()


async def test_a_case_follows_only_an_undecided_transfer_to_that_centre(
        two_centres: Desk) -> None:
    desk, cases = two_centres, two_centres.app.cases
    for n in (1, 2, 3):
        assert (await upload(desk, package(desk.kiosk_key, case_id=f"case-000{n}")))[0] == 201
    assert not await cases.mark_transferred("case-0001", "lucheng", "clerk-wj")  # not wujiang's
    assert not await cases.mark_transferred("case-0001", "lucheng", "nobody")
    # transferred elsewhere than where the kiosk sends it
    assert await cases.mark_transferred("case-0001", "wenzhou", "clerk-yj")
    status, body = await upload(desk, package(desk.kiosk_key, centre="lucheng"))
    assert status == 409 and "not transferred to lucheng" in body["message"]
    # decided after the transfer was marked: it stays where it was decided
    assert await cases.mark_transferred("case-0002", "lucheng", "clerk-yj")
    clerk = await login(desk, "clerk-yj")
    assert (await _decide(desk, clerk, "case-0002", "accept"))[0] == 200
    status, body = await upload(desk, package(desk.kiosk_key, case_id="case-0002",
                                              centre="lucheng"))
    assert status == 409 and "already decided (accepted) by clerk-yj" in body["message"]
    # a decided case is not marked at all
    assert (await _decide(desk, clerk, "case-0003", "refuse", reason="不属于本中心"))[0] == 200
    assert not await cases.mark_transferred("case-0003", "lucheng", "clerk-yj")
    await clerk[0].close()


async def test_a_transfer_to_a_centre_of_another_desk_is_a_new_case_there(
        tmp_path: Path, desk: Desk) -> None:
    assert (await upload(desk, package(desk.kiosk_key)))[0] == 201
    assert await desk.app.cases.mark_transferred("case-0001", "lucheng", "clerk-yj")
    other_url = f"sqlite:///{tmp_path / 'lucheng.db'}"
    await asyncio.to_thread(upgrade, other_url)
    app, server, _ = await make_desk(tmp_path / "lucheng", other_url, centres=("lucheng",),
                                     kiosk_credentials=tmp_path / "creds.json")
    lucheng = Desk(str(server.make_url("")).rstrip("/"), app, desk.kiosk_key)
    status, body = await upload(lucheng, package(desk.kiosk_key, centre="lucheng"))
    assert (status, body["status"]) == (201, "stored")
    await server.close()
    # and it is not decidable at the origin any more: one citizen, one case number
    clerk = await login(desk, "clerk-yj")
    status, case = await _case(desk, clerk, "case-0001")
    assert (status, case["state"]) == (200, "transferred")
    status, body = await _decide(desk, clerk, "case-0001", "accept")
    assert status == 409 and "decided there, not here" in body["message"]
    await clerk[0].close()


async def test_a_transfer_asked_before_the_papers_came_is_applied_when_they_do(
        two_centres: Desk) -> None:
    desk, cases = two_centres, two_centres.app.cases
    assert await cases.mark_transferred("case-0001", "lucheng", "clerk-yj")  # not here yet
    assert (await upload(desk, package(desk.kiosk_key)))[0] == 201  # the yongjia package
    status, body = await upload(desk, package(desk.kiosk_key, centre="lucheng"))
    assert (status, body["status"]) == (201, "transferred")
    # a pending mark the hub refused is taken back: the papers then stay where they came
    assert await cases.mark_transferred("case-0002", "lucheng", "clerk-yj")
    assert await cases.cancel_transfer("case-0002", "lucheng", "clerk-yj")
    assert (await upload(desk, package(desk.kiosk_key, case_id="case-0002")))[0] == 201
    status, body = await upload(desk, package(desk.kiosk_key, case_id="case-0002",
                                              centre="lucheng"))
    assert status == 409
    # a mark by someone who is no clerk of the case's centre is dropped when the papers come
    assert await cases.mark_transferred("case-0003", "yongjia", "clerk-lc")
    assert (await upload(desk, package(desk.kiosk_key, case_id="case-0003")))[0] == 201
    assert (await upload(desk, package(desk.kiosk_key, case_id="case-0003",
                                       centre="lucheng")))[0] == 409
    assert not await cases.mark_transferred("case-0004", "lucheng", "nobody")
    actions = await _audit_actions(desk)
    assert ("transfer", "case-0001", "lucheng (papers not here yet)") in actions
    assert ("transfer", "case-0001", "lucheng (asked before the papers came)") in actions
    assert ("transfer_refused", "case-0002", "lucheng") in actions


async def test_a_case_that_left_comes_back_when_the_citizen_is_sent_back(desk: Desk) -> None:
    cases = desk.app.cases
    assert (await upload(desk, package(desk.kiosk_key)))[0] == 201
    assert await cases.mark_transferred("case-0001", "lucheng", "clerk-yj")  # another desk's
    assert await cases.cancel_transfer("case-0001", "lucheng", "clerk-yj")  # hub said no
    clerk = await login(desk, "clerk-yj")
    assert (await _case(desk, clerk, "case-0001"))[1]["state"] == "received"
    assert await cases.mark_transferred("case-0001", "lucheng", "clerk-yj")
    assert (await _case(desk, clerk, "case-0001"))[1]["state"] == "transferred"
    # lucheng's clerk sends the citizen back: the kiosk files the papers here again
    status, body = await upload(desk, package(desk.kiosk_key, extra=("bank-card.jpg",)))
    assert (status, body["status"]) == (201, "transferred")
    assert (await _case(desk, clerk, "case-0001"))[1]["state"] == "received"
    assert (await _decide(desk, clerk, "case-0001", "accept"))[0] == 200
    await clerk[0].close()


async def test_a_store_locked_too_long_answers_busy_not_500(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    await asyncio.to_thread(upgrade, f"sqlite:///{path}")
    app, server, key = await make_desk(tmp_path, f"sqlite:///{path}",
                                       engine=make_engine(f"sqlite:///{path}",
                                                          busy_timeout_s=0.2))
    assert key is not None
    desk = Desk(str(server.make_url("")).rstrip("/"), app, key)
    assert (await upload(desk, package(key)))[0] == 201
    clerk = await login(desk, "clerk-yj")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writes, and takes its time
    try:
        status, body = await _decide(desk, clerk, "case-0001", "accept")
        assert (status, body["error"]) == (409, "busy")
        assert "nothing was changed" in body["message"]
        status, body = await upload(desk, package(key, case_id="case-0002"))
        assert (status, body["error"]) == (503, "busy")  # kiosks retry 5xx
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    status, case = await _decide(desk, clerk, "case-0001", "accept")
    assert status == 200 and case["case_number"].endswith("-00001")
    await clerk[0].close()
    await server.close()
