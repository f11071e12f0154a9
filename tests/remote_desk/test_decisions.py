"""Decisions through the desk's real HTTP API under concurrency, on SQLite and PostgreSQL: case
numbers unique and consecutive per centre and day, one winner per case, the transition table
enforced (a decided case is not decided again, 办结 only after 受理)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
import pytest

from remote_desk.users import Role, add_user
from tests.remote_desk.deskkit import PASSWORD, Desk, login, package, upload

CLERKS = ("clerk-yj", "clerk-yj2", "clerk-yj3", "clerk-yj4")


async def _clerks(desk: Desk) -> list[tuple[aiohttp.ClientSession, dict[str, Any]]]:
    """Four clerks of yongjia, each signed in with their own session."""
    async with desk.app.db() as db:
        for name in CLERKS[1:]:
            await add_user(db, name, "永嘉窗口", PASSWORD, Role.CLERK, ["yongjia"])
        await db.commit()
    return [await login(desk, name) for name in CLERKS]


async def _decide(desk: Desk, clerk: tuple[aiohttp.ClientSession, dict[str, Any]],
                  case_id: str, kind: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    session, me = clerk
    async with session.post(f"{desk.url}/api/cases/{case_id}/decision",
                            headers={"X-CSRF-Token": me["csrf"]},
                            json={"kind": kind, **extra}) as r:
        text = await r.text()
        return r.status, json.loads(text) if r.content_type == "application/json" else {
            "error": text}


BODIES: dict[str, dict[str, Any]] = {
    "accept": {}, "complete": {}, "refuse": {"reason": "不属于本中心受理范围"},
    "corrections": {"reason": "委托书缺少签名"},
    "accept_pending": {"missing": ["参保证明"], "commitment": "十个工作日内补交"}}


async def _close(clerks: list[tuple[aiohttp.ClientSession, dict[str, Any]]]) -> None:
    for session, _ in clerks:
        await session.close()


@pytest.mark.slow
async def test_concurrent_decisions_of_one_centre_get_consecutive_numbers(desk: Desk) -> None:
    n = 20
    for i in range(n):
        assert (await upload(desk, package(desk.kiosk_key, case_id=f"case-{i:04d}")))[0] == 201
    clerks = await _clerks(desk)

    async def view(i: int) -> int:  # each view is audited too, in the same moment
        async with clerks[i % len(clerks)][0].get(f"{desk.url}/api/cases/case-{i:04d}") as r:
            return r.status

    answers, views = await asyncio.gather(
        asyncio.gather(*(_decide(desk, clerks[i % len(clerks)], f"case-{i:04d}",
                                 "accept_pending" if i % 3 else "accept",
                                 **(BODIES["accept_pending"] if i % 3 else {}))
                         for i in range(n))),
        asyncio.gather(*(view(i) for i in range(n))))
    assert [status for status, _ in answers] == [200] * n, answers
    assert views == [200] * n
    numbers = sorted(body["case_number"] for _, body in answers)
    day = re.fullmatch(r"yongjia-(\d{8})-\d{5}", numbers[0])
    assert day is not None
    assert numbers == [f"yongjia-{day[1]}-{k:05d}" for k in range(1, n + 1)]
    auditor = await login(desk, "auditor")
    async with auditor[0].get(f"{desk.url}/api/audit/verify") as r:
        check = await r.json()
    assert check["ok"], check  # forty writers at once still make one chain
    assert check["entries"] >= 2 * n
    await _close([*clerks, auditor])


async def test_one_case_decided_five_times_at_once_has_one_winner(desk: Desk) -> None:
    assert (await upload(desk, package(desk.kiosk_key)))[0] == 201
    clerks = await _clerks(desk)
    kinds = ["accept", "accept", "refuse", "accept_pending", "corrections"]
    answers = await asyncio.gather(*(
        _decide(desk, clerks[i % len(clerks)], "case-0001", kind, **BODIES[kind])
        for i, kind in enumerate(kinds)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 409, 409, 409, 409], answers
    winner = next(body for status, body in answers if status == 200)
    for status, body in answers:
        if status == 409:
            assert body["error"] == "conflict"
            assert f"already decided ({winner['state']}) by {winner['decision']['by']}" in \
                body["message"], body
    await _close(clerks)


async def test_a_decided_case_is_not_decided_again(desk: Desk) -> None:
    assert (await upload(desk, package(desk.kiosk_key)))[0] == 201
    clerks = await _clerks(desk)
    status, accepted = await _decide(desk, clerks[0], "case-0001", "accept")
    assert status == 200 and accepted["state"] == "accepted"
    for kind in ("refuse", "accept", "accept_pending", "corrections"):
        status, body = await _decide(desk, clerks[1], "case-0001", kind, **BODIES[kind])
        assert (status, body["error"]) == (409, "conflict"), (kind, body)
        assert "already decided (accepted) by clerk-yj" in body["message"]
    status, completed = await _decide(desk, clerks[1], "case-0001", "complete")
    assert status == 200 and completed["state"] == "completed"
    assert completed["case_number"] == accepted["case_number"]  # 办结 keeps the number
    status, body = await _decide(desk, clerks[0], "case-0001", "complete")
    assert status == 409 and "completed" in body["message"]
    await _close(clerks)


async def test_complete_needs_an_accepted_case(desk: Desk) -> None:
    assert (await upload(desk, package(desk.kiosk_key)))[0] == 201
    assert (await upload(desk, package(desk.kiosk_key, case_id="case-0002")))[0] == 201
    clerks = await _clerks(desk)
    status, body = await _decide(desk, clerks[0], "case-0001", "complete")
    assert (status, body["error"]) == (409, "conflict")
    assert "not accepted" in body["message"]
    status, _ = await _decide(desk, clerks[0], "case-0002", "refuse", **BODIES["refuse"])
    assert status == 200
    status, body = await _decide(desk, clerks[0], "case-0002", "complete")
    assert status == 409 and "already decided (refused)" in body["message"]
    await _close(clerks)
