"""``tongban demo --auto --scenario NAME``: the situations of an ordinary day at the window,
each played through the real hub, desk and kiosk services (devices SIMULATED, clerks as the
headless stand-in, ``remote_desk.headless``), reporting what each person saw, step by step.

Every scenario starts its own stack (hub, desk, kiosks) so that one cannot disturb the next;
citizens act through the kiosk's own touch-screen API, clerks through the desk's own HTTP API
and clerk WebSocket, exactly as the page does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tongban.demo import (
    DEMO_CLERK,
    DemoError,
    KioskBot,
    KioskHandle,
    Stack,
    _demo_directory,
    run_stack,
    scan_logs,
)

CENTRE = "yongjia"
"""An automatic-routing centre of the sample directory."""
PICK_CENTRE = "wujiang"
"""A pick-routing centre of the sample directory."""
MATTER = "gjj-jczm"
"""Handled at both centres."""
CLERK_2 = f"{DEMO_CLERK}-2"


@dataclass
class Report:
    """One scenario's outcome: checks (all must hold), and what each person saw."""

    scenario: str
    checks: dict[str, bool] = field(default_factory=dict)
    citizens: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    clerks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, holds: bool) -> bool:
        self.checks[name] = bool(holds)
        return bool(holds)

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "ok": bool(self.checks) and all(
            self.checks.values()), "simulated": True, "checks": self.checks,
            "citizens": self.citizens, "clerks": self.clerks, **self.facts}


class CitizenWatch:
    """What one citizen's screen showed, step by step: every distinct screen the kiosk's
    session produced (``KioskService.shown``), however briefly, in the citizen's terms."""

    KEYS = ("state", "position", "expected_wait_s", "position_words", "wait_words", "offered",
            "note", "centre_name", "detail", "next_opening_words")

    def __init__(self, bot: KioskBot, t0: float) -> None:
        self.bot = bot
        self.service = bot.kiosk.service
        self._from = len(self.service.shown)
        self._t0 = t0
        self._last: dict[str, Any] | None = None
        self._steps: list[dict[str, Any]] = []
        self._seen = 0

    @property
    def steps(self) -> list[dict[str, Any]]:
        shown = list(self.service.shown)[self._from:]
        for at, screen in shown[self._seen:]:
            step = {k: screen[k] for k in self.KEYS if screen.get(k) not in (None, "", False)}
            receipt = screen.get("receipt")
            if screen["state"] == "result" and receipt:
                step["receipt"] = {"case_number": receipt.get("case_number") or None,
                                   "kind": receipt.get("kind")}
            if step != self._last:
                self._steps.append({"t": round(at - self._t0, 2), **step})
                self._last = step
        self._seen = len(shown)
        return self._steps

    def saw(self, state: str, **where: Any) -> list[dict[str, Any]]:
        """The steps in ``state`` whose fields hold ``where``."""
        return [s for s in self.steps if s["state"] == state
                and all(s.get(k) == v for k, v in where.items())]

    def states(self) -> list[str]:
        out: list[str] = []
        for s in self.steps:
            if not out or out[-1] != s["state"]:
                out.append(s["state"])
        return out


async def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.2)
    raise DemoError(f"scenario: {what} did not happen within {timeout:.0f} s")


@contextlib.asynccontextmanager
async def _media_on_loopback(test_hosts: bool) -> AsyncIterator[None]:
    """Headless clerks and kiosks are aiortc peers in this process: without test hosts their
    media stays on 127.0.0.1 (the stack already pins it to the test host's address)."""
    if test_hosts:
        yield
        return
    import aioice.ice

    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


class Day:
    """One scenario's people: citizens at kiosks, clerks at the desk."""

    def __init__(self, stack: Stack, report: Report) -> None:
        self.stack = stack
        self.report = report
        self.watches: dict[str, CitizenWatch] = {}
        self.bots: dict[str, KioskBot] = {}
        self.clerks: dict[str, Any] = {}
        self.t0 = time.monotonic()
        """Every person's steps are timed from here."""

    def citizen(self, name: str, kiosk: KioskHandle) -> KioskBot:
        bot = KioskBot(self.stack, kiosk)
        self.bots[name] = bot
        self.watches[name] = CitizenWatch(bot, self.t0)
        return bot

    async def clerk(self, username: str, *, auto_accept: bool) -> Any:
        from remote_desk.headless import HeadlessClerk

        clerk = HeadlessClerk(self.stack.desk_url, username, self.stack.password)
        clerk.auto_accept = auto_accept
        clerk.t0 = self.t0
        await clerk.start()
        self.clerks[username] = clerk
        await asyncio.sleep(0.3)  # the clerk's presence reaches the hub
        return clerk

    async def close(self) -> None:
        for name, watch in self.watches.items():
            self.report.citizens[name] = watch.steps
        directory = self.stack.hub.directory
        for name, clerk in self.clerks.items():
            self.report.clerks[name] = [_in_words(step, directory) for step in clerk.seen]
            with contextlib.suppress(Exception):
                await clerk.close()

    async def in_call(self, clerk: Any, timeout: float = 60, *, after: str | None = None
                      ) -> str:
        """Wait until the clerk's call has started (with another case than ``after``, the
        case just decided, whose call may not have ended yet) and the case package is at the
        desk."""
        await until(lambda: clerk.call is not None and clerk.call["case_id"] != after,
                    timeout, f"{clerk.username}'s call")
        case_id = str(clerk.call["case_id"])
        await until(lambda: self._stored(case_id), 60, "the case package at the desk")
        if await clerk.case(case_id) is None:  # the clerk opens it once (an audited view)
            raise DemoError(f"scenario: {clerk.username} cannot open the case")
        return case_id

    async def _stored(self, case_id: str) -> bool:
        """The package is at the desk (looked up in its store, so that waiting for it does
        not put a clerk's view in the audit trail at every poll)."""
        from remote_desk.models import Case

        async with self.stack.desk.db() as db:
            return await db.get(Case, case_id) is not None

    async def finish(self, name: str) -> dict[str, Any]:
        """The citizen reads the result and presses 办好了; the kiosk wipes."""
        bot = self.bots[name]
        screen = await bot.wait("result", timeout=30)
        await bot.press("finish")
        await bot.wait("idle", timeout=10)
        kiosk = bot.kiosk.service
        await until(lambda: not kiosk.spool.pending(), 30, "the kiosk's spool emptied")
        return screen

    def residue(self) -> list[str]:
        return [p for k in self.stack.kiosks for p in k.service.residue()]


Scenario = Callable[[Day, Report], Awaitable[None]]


def _in_words(step: dict[str, Any], directory: Any) -> dict[str, Any]:
    """A clerk's step as the clerk's screen names things (matters, sites and centres by
    name, not by code)."""

    def name(kind: str, code: Any) -> Any:
        found = getattr(directory, kind)(code) if isinstance(code, str) else None
        return found.name if found is not None and found.name else code

    out = dict(step)
    if "rows" in out:
        out["rows"] = [{**r, "matter": name("matter", r.get("matter")),
                        "site": name("site", r.get("site"))} for r in out["rows"]]
    for key, kind in (("matter", "matter"), ("site", "site"), ("centre", "centre"),
                      ("to_centre", "centre")):
        if key in out:
            out[key] = name(kind, out[key])
    return out


# -- the scenarios --------------------------------------------------------------------------------

async def busy(day: Day, report: Report) -> None:
    """One clerk, two citizens: the second is told position 1 and an expected wait, then is
    served when the first case ends."""
    clerk = await day.clerk(DEMO_CLERK, auto_accept=True)
    first = day.citizen("citizen_1", day.stack.kiosks[0])
    second = day.citizen("citizen_2", day.stack.kiosks[1])
    await first.apply(CENTRE, MATTER, skip_non_key=True)
    case_1 = await day.in_call(clerk)
    await second.apply(CENTRE, MATTER, skip_non_key=True)
    told = await until(lambda: day.watches["citizen_2"].saw("waiting", position=1), 20,
                       "the second citizen told position 1")
    report.check("second_told_position_1_and_a_wait", any(
        s.get("expected_wait_s", 0) > 0 and s.get("wait_words") for s in told))
    await clerk.decide(case_1, "accept")
    one = await day.finish("citizen_1")
    case_2 = await day.in_call(clerk, after=case_1)
    await clerk.decide(case_2, "accept")
    two = await day.finish("citizen_2")
    numbers = [one["receipt"]["case_number"], two["receipt"]["case_number"]]
    report.facts["case_numbers"] = numbers
    report.check("both_accepted_with_distinct_numbers", all(numbers) and
                 numbers[0] != numbers[1])
    states = day.watches["citizen_2"].states()
    report.check("second_served_after_the_first", case_1 != case_2 and _in_order(
        states, ["waiting", "in_call", "result"]))


def _in_order(seen: list[str], wanted: list[str]) -> bool:
    """``wanted`` appears in ``seen`` in this order (other states may come between)."""
    it = iter(seen)
    return all(state in it for state in wanted)


async def pick(day: Day, report: Report) -> None:
    """A pick-routing centre: the clerk chooses the citizen from the list."""
    clerk = await day.clerk(DEMO_CLERK, auto_accept=False)
    citizen = day.citizen("citizen", day.stack.kiosks[0])
    await citizen.apply(PICK_CENTRE, MATTER, skip_non_key=True)
    waiting = await until(lambda: day.watches["citizen"].saw("waiting", position=1), 20,
                          "the citizen waiting at position 1")
    report.check("citizen_waits_in_the_list_with_position", bool(waiting))
    row = await until(lambda: next((t for t, i in clerk.queue.items()
                                    if i.get("centre") == PICK_CENTRE), None), 20,
                      "the citizen in the clerk's list")
    report.check("nothing_offered_in_pick_mode", not clerk.offers)
    await clerk.accept(row)
    case_id = await day.in_call(clerk)
    await citizen.wait("in_call", timeout=20)
    body = await clerk.decide(case_id, "accept")
    screen = await day.finish("citizen")
    report.facts["case_number"] = screen["receipt"]["case_number"]
    report.check("case_completed", body["state"] == "accepted" and
                 screen["receipt"]["case_number"] == body["case_number"])


async def _handed_back(day: Day, report: Report, *, lapse: bool) -> None:
    first = await day.clerk(DEMO_CLERK, auto_accept=False)
    second = await day.clerk(CLERK_2, auto_accept=False)
    citizen = day.citizen("citizen", day.stack.kiosks[0])
    await citizen.apply(CENTRE, MATTER, skip_non_key=True)
    offered = await until(lambda: first.offers, 20, "an offer to the clerk idle longest")
    report.check("offered_to_the_clerk_idle_longest", not second.offers)
    await until(lambda: day.watches["citizen"].saw("waiting", offered=True), 10,
                "the citizen told a clerk is coming")
    second.auto_accept = True
    if not lapse:  # (on lapse the first clerk does nothing: the hub takes the offer back)
        await first.decline(offered[0])
    await until(lambda: second.call is not None, 60, "the next clerk's call")
    # handed back to the front of the queue and at once offered to the next clerk: the
    # citizen keeps position 1 throughout and is never sent back to the end
    places = [s["position"] for s in day.watches["citizen"].saw("waiting") if "position" in s]
    report.check("citizen_kept_the_front_place", bool(places) and set(places) == {1})
    report.check("offered_to_the_next_clerk", bool(second.offers))
    case_id = await day.in_call(second)
    await second.decide(case_id, "accept")
    screen = await day.finish("citizen")
    report.facts["case_number"] = screen["receipt"]["case_number"]
    report.check("served_by_the_next_clerk", first.call is None and not first.calls and
                 bool(screen["receipt"]["case_number"]))


async def decline(day: Day, report: Report) -> None:
    """An offered citizen is declined: back to the front, served by the next clerk."""
    await _handed_back(day, report, lapse=False)


async def lapse(day: Day, report: Report) -> None:
    """An offer lapses (the clerk stepped away): back to the front, served by the next."""
    await _handed_back(day, report, lapse=True)


async def transfer(day: Day, report: Report) -> None:
    """The clerk transfers the citizen to another centre's clerk; the case follows and is
    decided there."""
    here = await day.clerk(DEMO_CLERK, auto_accept=True)       # 永嘉 only
    there = await day.clerk(CLERK_2, auto_accept=False)        # 吴江 only (pick)
    citizen = day.citizen("citizen", day.stack.kiosks[0])
    await citizen.apply(CENTRE, MATTER, skip_non_key=True)
    case_id = await day.in_call(here)
    before = await here.case(case_id)
    await here.transfer(PICK_CENTRE)
    await until(lambda: day.watches["citizen"].saw("waiting", centre_name=_centre_name(
        PICK_CENTRE)), 20, "the citizen told of the transfer")
    row = await until(lambda: next((t for t, i in there.queue.items()
                                    if i.get("centre") == PICK_CENTRE), None), 20,
                      "the citizen in the other centre's list")
    await there.accept(row)
    await until(lambda: there.call is not None, 30, "the other centre's call")
    moved = await until(lambda: _case_at(there, case_id, PICK_CENTRE), 60,
                        "the case filed under the other centre")
    report.check("case_followed_with_identity_and_materials", before is not None and sorted(
        f["name"] for f in moved["files"]) == sorted(f["name"] for f in before["files"]))
    report.check("first_centre_no_longer_sees_it", await here.case(case_id) is None)
    body = await there.decide(case_id, "accept")
    screen = await day.finish("citizen")
    report.facts["case_number"] = body["case_number"]
    report.check("decided_at_the_other_centre", str(body["case_number"]).startswith(
        PICK_CENTRE) and screen["receipt"]["case_number"] == body["case_number"])


async def _case_at(clerk: Any, case_id: str, centre: str) -> dict[str, Any] | None:
    case: dict[str, Any] | None = await clerk.case(case_id)
    return case if case is not None and case.get("centre") == centre else None


def _centre_name(code: str) -> str:
    from kiosk.catalogue import load_catalogue

    found = load_catalogue().centre(code)
    return found.name if found else code


async def cancel(day: Day, report: Report) -> None:
    """The citizen gives up while waiting: every desk sees it at once, nothing is left."""
    first = await day.clerk(DEMO_CLERK, auto_accept=False)
    second = await day.clerk(CLERK_2, auto_accept=False)
    for clerk in (first, second):  # both signed in, both away from their desks
        await clerk.presence(False)
    citizen = day.citizen("citizen", day.stack.kiosks[0])
    await citizen.apply(CENTRE, MATTER, skip_non_key=True)
    await until(lambda: day.watches["citizen"].saw("waiting", position=1), 20,
                "the citizen waiting")
    await until(lambda: first.queue and second.queue, 10, "the citizen in both clerks' lists")
    pressed = time.monotonic()
    await citizen.press("cancel")
    await until(lambda: not first.queue and not second.queue, 10,
                "the citizen gone from every list")
    report.facts["gone_from_every_list_ms"] = round((time.monotonic() - pressed) * 1000, 1)
    report.check("gone_from_every_list_within_2_s",
                 report.facts["gone_from_every_list_ms"] < 2000)
    await citizen.wait("idle", timeout=5)
    report.check("kiosk_back_to_idle", True)


def closed_directory() -> Any:
    """The sample directory with 永嘉 open for one hour, three hours from now (so it is
    closed now, and the next opening is today or tomorrow)."""
    directory = _demo_directory()
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    start = (now + timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=1)
    span = f"{start:%H:%M}-{'24:00' if end.hour == 0 else f'{end:%H:%M}'}"
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    centres = [c.model_copy(update={"hours": {d: [span] for d in days}})
               if c.code == CENTRE else c for c in directory.centres]
    return directory.model_copy(update={"centres": centres})


async def closed(day: Day, report: Report) -> None:
    """Outside working hours: the kiosk says when the centre opens, in words."""
    await day.clerk(DEMO_CLERK, auto_accept=True)
    citizen = day.citizen("citizen", day.stack.kiosks[0])
    await citizen.apply(CENTRE, MATTER, skip_non_key=True)
    screen = await citizen.wait("closed", timeout=20)
    words = str(screen.get("next_opening_words") or "")
    report.facts["shown"] = screen.get("detail")
    report.check("says_when_it_opens_in_words", screen.get("reason") == "outside_hours" and
                 bool(words) and words in str(screen.get("detail"))
                 and ("今天" in words or "明天" in words))
    await citizen.press("finish")
    await citizen.wait("idle", timeout=5)


async def two_clerks(day: Day, report: Report) -> None:
    """Two clerks decide two cases at the same moment, then both try to decide one case."""
    from remote_desk.headless import DecisionRefused

    first = await day.clerk(DEMO_CLERK, auto_accept=True)
    second = await day.clerk(CLERK_2, auto_accept=True)
    one = day.citizen("citizen_1", day.stack.kiosks[0])
    two = day.citizen("citizen_2", day.stack.kiosks[1])
    await asyncio.gather(one.apply(CENTRE, MATTER, skip_non_key=True),
                         two.apply(CENTRE, MATTER, skip_non_key=True))
    cases = await asyncio.gather(day.in_call(first), day.in_call(second))
    bodies = await asyncio.gather(first.decide(cases[0], "accept"),
                                  second.decide(cases[1], "accept"))
    numbers = sorted(str(b["case_number"]) for b in bodies)
    report.facts["case_numbers"] = numbers
    serials = [int(n.rsplit("-", 1)[1]) for n in numbers]
    report.check("numbers_unique_and_consecutive", len(set(numbers)) == 2 and
                 serials[1] == serials[0] + 1)
    # the same case, completed by both clerks at once: one wins, the other is told why
    outcomes: list[str] = []

    async def complete(clerk: Any) -> None:
        try:
            await clerk.decide(cases[0], "complete")
            outcomes.append("200")
        except DecisionRefused as exc:
            outcomes.append(str(exc.status))

    await asyncio.gather(complete(first), complete(second))
    report.facts["same_case_outcomes"] = sorted(outcomes)
    report.check("same_case_one_wins_one_conflict", sorted(outcomes) == ["200", "409"])
    for name in ("citizen_1", "citizen_2"):
        await day.finish(name)


SCENARIOS: dict[str, tuple[Scenario, dict[str, Any]]] = {
    "busy": (busy, {"kiosks": 2, "clerks": 1}),
    "pick": (pick, {"kiosks": 1, "clerks": 1}),
    "decline": (decline, {"kiosks": 1, "clerks": 2}),
    "lapse": (lapse, {"kiosks": 1, "clerks": 2, "offer_seconds": 5.0}),
    "transfer": (transfer, {"kiosks": 1, "clerks": 2, "clerk_centres": {
        DEMO_CLERK: [CENTRE], CLERK_2: [PICK_CENTRE]}}),
    "cancel": (cancel, {"kiosks": 1, "clerks": 2}),
    "closed": (closed, {"kiosks": 1, "clerks": 1, "directory": closed_directory}),
    "two-clerks": (two_clerks, {"kiosks": 2, "clerks": 2}),
}
"""Every situation of the day, with the stack it needs."""

POSTGRES_URL = os.environ.get("TONGBAN_DEMO_POSTGRES", "postgresql://127.0.0.1:5432/test")
"""Where ``two-clerks`` also runs on PostgreSQL (a scratch database is made and dropped)."""


async def _scratch_postgres() -> tuple[str, Callable[[], Awaitable[None]]] | str:
    """A fresh PostgreSQL database for one run, or why there is none."""
    import secrets

    import asyncpg  # type: ignore[import-untyped]

    name = f"tongban_demo_{secrets.token_hex(4)}"
    try:
        admin = await asyncio.wait_for(asyncpg.connect(POSTGRES_URL), 5)
    except Exception as exc:  # no server here: the SQLite run still counts
        return f"PostgreSQL not reachable at {POSTGRES_URL} ({type(exc).__name__})"
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    return url, drop


async def play(name: str, *, test_hosts: bool, folder: Path | None = None,
               database: str | None = None) -> dict[str, Any]:
    """Play one scenario on a fresh stack and report it."""
    scenario, options = SCENARIOS[name]
    options = dict(options)
    if callable(options.get("directory")):
        options["directory"] = options["directory"]()
    report = Report(name)
    if database is not None:
        report.facts["database"] = database.split("://", 1)[0]
    started = time.monotonic()
    async with _media_on_loopback(test_hosts), run_stack(
            test_hosts=test_hosts, folder=folder, database=database, **options) as stack:
        day = Day(stack, report)
        try:
            await scenario(day, report)
        except DemoError as exc:
            report.check("completed", False)
            report.facts["error"] = str(exc)
        finally:
            await day.close()
        report.facts["kiosk_residue"] = day.residue()
        report.check("nothing_left_on_the_kiosks", not report.facts["kiosk_residue"])
        logs, cards = list(stack.log_files), [k.card for k in stack.kiosks]
    leaks = sorted({hit for card in cards for hit in scan_logs(logs, card)})
    report.facts["personal_data_in_logs"] = leaks
    report.check("no_personal_data_in_logs", not leaks)
    report.facts["seconds"] = round(time.monotonic() - started, 1)
    return report.to_json()


async def play_all_databases(name: str, *, test_hosts: bool, folder: Path | None
                             ) -> dict[str, Any]:
    """``two-clerks`` runs on SQLite and on PostgreSQL; the others once, on SQLite."""
    if name != "two-clerks":
        return await play(name, test_hosts=test_hosts, folder=folder)

    def own(sub: str) -> Path | None:  # each run its own credentials, database and spool
        return None if folder is None else folder / sub

    runs = [await play(name, test_hosts=test_hosts, folder=own("sqlite"))]
    scratch = await _scratch_postgres()
    if isinstance(scratch, str):
        runs.append({"scenario": name, "database": "postgresql", "skipped": scratch,
                     "ok": True})
    else:
        url, drop = scratch
        try:
            runs.append(await play(name, test_hosts=test_hosts, folder=own("postgresql"),
                                   database=url))
        finally:
            await drop()
    return {"scenario": name, "ok": all(r["ok"] for r in runs), "simulated": True,
            "runs": runs}
