"""The citizen's session as an explicit state machine.

idle → choose centre → choose matter → read the ID card → face verification with liveness →
capture each material of the checklist → request remote service → waiting → in call → result
→ wipe → idle. Every step has a way back; inactivity asks "are you still there?" and then
wipes; a device fault or the hub becoming unreachable has its own screen. The machine does no
I/O: ``handle`` and ``tick`` return the actions the kiosk service must carry out (send the
ticket, upload the package, wipe, ...), so nothing is half-sent and every transition is
testable with a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kiosk import events as ev
from kiosk import words
from kiosk.catalogue import Catalogue, Material
from signaling import protocol as p


class State(StrEnum):
    IDLE = "idle"
    CHOOSE_CENTRE = "choose_centre"
    CHOOSE_MATTER = "choose_matter"
    READ_CARD = "read_card"
    VERIFY_FACE = "verify_face"
    CAPTURE = "capture"
    REQUEST = "request"
    WAITING = "waiting"
    IN_CALL = "in_call"
    RESULT = "result"
    CLOSED = "closed"
    """Service closed (outside hours, nobody signed in): told at once, with the next opening."""
    DEVICE_FAULT = "device_fault"
    HUB_UNREACHABLE = "hub_unreachable"


class Action(StrEnum):
    START_CARD_READER = "start_card_reader"
    START_FACE_CHECK = "start_face_check"
    START_CAPTURE = "start_capture"
    SEND_TICKET = "send_ticket"
    CANCEL_TICKET = "cancel_ticket"
    UPLOAD_PACKAGE = "upload_package"
    START_CALL = "start_call"
    END_CALL = "end_call"
    SHOW_RECEIPT = "show_receipt"
    FOLLOW_TRANSFER = "follow_transfer"
    """The case moved to another centre: what was delivered goes to that centre's desk."""
    WIPE = "wipe"


PROMPTS: dict[State, str] = {
    State.IDLE: "请点击屏幕开始办理",
    State.CHOOSE_CENTRE: "请选择要办理业务的地方",
    State.CHOOSE_MATTER: "请选择要办理的事项",
    State.READ_CARD: "请把身份证放在读卡区",
    State.VERIFY_FACE: "请看着屏幕上方的摄像头",
    State.CAPTURE: "请把材料平放在高拍仪下",
    State.REQUEST: "正在为您连接远程窗口",
    State.WAITING: "正在排队，请稍候",
    State.IN_CALL: "工作人员正在为您办理",
    State.RESULT: "办理结果",
    State.CLOSED: "现在不能远程办理",
    State.DEVICE_FAULT: "设备故障，请联系工作人员",
    State.HUB_UNREACHABLE: "网络中断，正在重新连接",
}
STILL_THERE = "您还在吗？请点击屏幕继续"
FACE_FAILED = "没有核验通过，请再试一次"
FACE_TO_CLERK = "请继续办理，工作人员会在视频中为您核对身份"
FACE_ATTEMPTS = 3
"""Face checks a session may try before the clerk is told (configurable: ``[face] attempts``)."""

# seconds of inactivity before "are you still there?"; None: no inactivity timeout there
IDLE_TIMEOUTS: dict[State, float | None] = {
    State.IDLE: None, State.CHOOSE_CENTRE: 60, State.CHOOSE_MATTER: 60,
    State.READ_CARD: 90, State.VERIFY_FACE: 90, State.CAPTURE: 120, State.REQUEST: None,
    State.WAITING: None, State.IN_CALL: None, State.RESULT: 60, State.CLOSED: 30,
    State.DEVICE_FAULT: 120, State.HUB_UNREACHABLE: 120,
}
STILL_THERE_SECONDS = 20.0


@dataclass
class Context:
    """What the session holds (wiped at its end)."""

    centre: str | None = None
    matter: str | None = None
    by_proxy: bool = False
    card: dict[str, Any] | None = None
    verification: dict[str, Any] | None = None
    face: str | None = None
    """What the citizen is told of the face check: pass, fail or clerk (never a score)."""
    face_failures: int = 0
    """Face checks of this session that did not pass."""
    challenges: set[str] = field(default_factory=set)
    """Liveness challenges already answered (each is accepted once)."""
    materials: list[Material] = field(default_factory=list)
    index: int = 0
    captured: dict[str, int] = field(default_factory=dict)
    """Pages captured per material code."""
    skipped: list[str] = field(default_factory=list)
    ticket: p.TicketUpdate | None = None
    """The hub's last word on this case's ticket."""
    call: p.CallStart | None = None
    """The current call (while in it)."""
    receipt: ev.Receipt | None = None
    closed: ev.ServiceClosed | None = None
    note: str | None = None
    """A sentence about what just happened to the ticket (transferred, back in the queue)."""
    fault: str | None = None


class TransitionError(Exception):
    """An event the current state does not accept (the screen ignores it)."""


@dataclass
class Session:
    """One citizen's session. Feed it events and clock ticks; carry out what it returns."""

    catalogue: Catalogue
    now: float = 0.0
    state: State = State.IDLE
    context: Context = field(default_factory=Context)
    last_touch: float = 0.0
    asking_still_there: bool = False
    resume_to: State | None = None
    history: list[State] = field(default_factory=list)
    face_attempts: int = FACE_ATTEMPTS
    """Face checks before the case goes to the clerk marked as failed."""

    # -- the screen ---------------------------------------------------------------------------

    def screen(self) -> dict[str, Any]:
        """What the touch screen shows now (no personal data beyond what the step needs)."""
        out: dict[str, Any] = {"state": self.state.value, "prompt": PROMPTS[self.state],
                               "still_there": self.asking_still_there}
        ctx = self.context
        if self.asking_still_there:
            out["prompt"] = STILL_THERE
        if self.state is State.CHOOSE_MATTER:
            out["centre"] = ctx.centre
        if self.state in (State.VERIFY_FACE, State.CAPTURE) and ctx.face is not None:
            out["face"] = ctx.face  # pass, fail or clerk: the score goes to the desk only
            if self.state is State.VERIFY_FACE:
                out["face_attempts_left"] = max(0, self.face_attempts - ctx.face_failures)
        if ctx.centre and self.state not in (State.IDLE, State.CHOOSE_CENTRE):
            found = self.catalogue.centre(ctx.centre)
            out["centre_name"] = found.name if found else ctx.centre
        if self.state is State.CAPTURE and ctx.materials:
            material = ctx.materials[ctx.index]
            out.update(material=material.name, key=material.key, card=material.card,
                       step=ctx.index + 1, steps=len(ctx.materials),
                       captured=ctx.captured.get(material.code, 0))
        if self.state is State.WAITING:
            ticket = ctx.ticket
            position = ticket.position if ticket else None
            wait = ticket.expected_wait_s if ticket else None
            offered = ticket is not None and ticket.state in (p.TicketState.OFFERED,
                                                              p.TicketState.IN_CALL)
            out.update(position=position, expected_wait_s=wait, offered=offered,
                       wait_words=words.wait_words(wait), position_words=(
                           "工作人员马上为您接通" if offered else words.position_words(position)))
            key = None if offered else words.queue_speech_key(position, wait)
            if key is not None:
                out["speak"] = key
        if ctx.note and self.state in (State.WAITING, State.IN_CALL, State.REQUEST):
            out["note"] = ctx.note
        if self.state is State.CLOSED and ctx.closed:
            closed = ctx.closed.closed
            out.update(reason=closed.reason, next_opening=(
                closed.next_opening.isoformat() if closed.next_opening else None),
                next_opening_words=ctx.closed.opening_words,
                detail=words.closed_words(closed.reason, out.get("centre_name", ""),
                                          ctx.closed.opening_words))
        if self.state is State.RESULT and ctx.receipt:
            out.update(receipt=ctx.receipt.model_dump())
        return out

    # -- plumbing -----------------------------------------------------------------------------

    def _go(self, state: State) -> None:
        self.history.append(self.state)
        self.state = state
        self.asking_still_there = False
        self.last_touch = self.now

    def _wipe(self) -> list[Action]:
        self.context = Context()
        self._go(State.IDLE)
        return [Action.WIPE]

    def tick(self, now: float) -> list[Action]:
        """Advance the clock: inactivity prompts, then wipes."""
        self.now = now
        limit = IDLE_TIMEOUTS[self.state]
        if limit is None:
            return []
        idle = now - self.last_touch
        if not self.asking_still_there and idle >= limit:
            self.asking_still_there = True
            return []
        if self.asking_still_there and idle >= limit + STILL_THERE_SECONDS:
            actions = [Action.CANCEL_TICKET] if self.context.ticket else []
            return actions + self._wipe()
        return []

    def handle(self, event: ev.SessionEvent, now: float) -> list[Action]:
        """One event from the screen, a device, the hub or the desk."""
        self.now = now
        method: Callable[[Any], list[Action]] | None = getattr(self, f"_on_{event.name}", None)
        if method is None:
            raise TransitionError(f"unknown event {event.name}")
        if event.from_screen and not isinstance(event, ev.Finish):
            self.last_touch = now
            if self.asking_still_there:
                self.asking_still_there = False
                if isinstance(event, ev.Touch | ev.StillHere):
                    return []
        return method(event)

    def _expect(self, *states: State) -> None:
        if self.state not in states:
            raise TransitionError(f"not accepted in {self.state.value}")

    # -- the steps ----------------------------------------------------------------------------

    def _on_touch(self, e: ev.Touch) -> list[Action]:
        if self.state is State.IDLE:
            self._go(State.CHOOSE_CENTRE)
        return []

    def _on_still_here(self, e: ev.StillHere) -> list[Action]:
        return []

    def _on_choose_centre(self, e: ev.ChooseCentre) -> list[Action]:
        self._expect(State.CHOOSE_CENTRE)
        if self.catalogue.centre(e.centre) is None:
            raise TransitionError("unknown centre")
        self.context.centre = e.centre
        self._go(State.CHOOSE_MATTER)
        return []

    def _on_choose_matter(self, e: ev.ChooseMatter) -> list[Action]:
        self._expect(State.CHOOSE_MATTER)
        found = self.catalogue.matter(e.matter)
        if found is None or self.context.centre not in found.centres:
            raise TransitionError("this matter is not handled at that centre")
        if e.by_proxy and not found.proxy:
            raise TransitionError("this matter cannot be applied for by an agent")
        self.context.matter, self.context.by_proxy = e.matter, e.by_proxy
        self.context.materials = found.checklist(by_proxy=e.by_proxy)
        self._go(State.READ_CARD)
        return [Action.START_CARD_READER]

    def _on_card_read(self, e: ev.CardRead) -> list[Action]:
        self._expect(State.READ_CARD)
        self.context.card = e.card
        self._go(State.VERIFY_FACE)
        return [Action.START_FACE_CHECK]

    def _on_card_removed(self, e: ev.CardRemoved) -> list[Action]:
        # removal matters only while the face is being compared with the card just read
        if self.state is State.VERIFY_FACE:
            self.context.card = None
            self._go(State.READ_CARD)
            return [Action.START_CARD_READER]
        return []

    def _on_face_result(self, e: ev.FaceResult) -> list[Action]:
        """The face check's outcome. A challenge answers once; a failure may be tried again
        until ``face_attempts`` have failed, and then the case goes on to the clerk marked
        as failed, with the stills of every attempt (never silently retried)."""
        self._expect(State.VERIFY_FACE)
        ctx = self.context
        if e.challenge_id:
            if e.challenge_id in ctx.challenges:
                raise TransitionError("this liveness challenge was answered already")
            ctx.challenges.add(e.challenge_id)
        passed = e.decision in ("match", "review") and e.liveness
        if not passed:
            ctx.face_failures += 1
        to_clerk = not passed and ctx.face_failures >= self.face_attempts
        ctx.verification = {"decision": e.decision, "liveness": e.liveness,
                            **(e.record or {}), "attempt": len(ctx.challenges) or 1,
                            "failed_attempts": ctx.face_failures, "to_clerk": to_clerk}
        if to_clerk:
            ctx.verification["flag"] = f"face check failed {ctx.face_failures} times"
        if passed or to_clerk:
            ctx.face = "pass" if passed and e.decision == "match" else "clerk"
            ctx.index = 0
            self._go(State.CAPTURE)
            return [Action.START_CAPTURE]
        ctx.face = "fail"
        return []  # stays: the screen offers "try again" (retake) or "back"

    def _on_retake(self, e: ev.Retake) -> list[Action]:
        if self.state is State.VERIFY_FACE:
            if self.context.face_failures >= self.face_attempts:
                raise TransitionError("no face checks left: the clerk verifies")
            self.context.face = None
            return [Action.START_FACE_CHECK]
        self._expect(State.CAPTURE)
        # retake: the pages of this material (the current one unless named) are dropped
        code = e.material or self.context.materials[self.context.index].code
        self.context.captured.pop(code, None)
        return [Action.START_CAPTURE]

    def _advance(self) -> list[Action]:
        self.context.index += 1
        if self.context.index >= len(self.context.materials):
            self._go(State.REQUEST)
            return [Action.SEND_TICKET]
        return [Action.START_CAPTURE]

    def _on_captured(self, e: ev.Captured) -> list[Action]:
        self._expect(State.CAPTURE)
        current = self.context.materials[self.context.index]
        if e.material != current.code:
            raise TransitionError("captured a material out of turn")
        self.context.captured[e.material] = self.context.captured.get(e.material, 0) + e.pages
        return []

    def _on_done(self, e: ev.Done) -> list[Action]:
        """The citizen confirms the current material (all its pages) and moves on."""
        self._expect(State.CAPTURE)
        current = self.context.materials[self.context.index]
        if not self.context.captured.get(current.code):
            raise TransitionError("nothing captured for this material yet")
        return self._advance()

    def _on_skip(self, e: ev.Skip) -> list[Action]:
        self._expect(State.CAPTURE)
        current = self.context.materials[self.context.index]
        if current.key:
            raise TransitionError("a key material cannot be skipped")
        self.context.skipped.append(current.code)
        return self._advance()

    # -- the queue and the call (what the hub says) -------------------------------------------

    def _on_ticket_changed(self, e: ev.TicketChanged) -> list[Action]:
        """Every ticket state and close reason the protocol defines."""
        self._expect(State.REQUEST, State.WAITING, State.IN_CALL, State.HUB_UNREACHABLE,
                     State.RESULT)
        ticket, ctx = e.ticket, self.context
        if self.state is State.RESULT:
            return []  # the receipt is shown: the ticket's closing changes nothing
        if self.state is State.HUB_UNREACHABLE:
            self._go(self.resume_to or State.REQUEST)  # the hub answers: it is back
        actions: list[Action] = []
        if ticket.state is p.TicketState.CLOSED:
            return self._ticket_closed(ticket)
        if ctx.centre is not None and ticket.centre != ctx.centre:
            # transferred to another centre: the case follows the citizen there
            target = self.catalogue.centre(ticket.centre)
            ctx.note = f"已为您转到{target.name if target else ticket.centre}，请稍候"
            ctx.centre = ticket.centre
            actions.append(Action.FOLLOW_TRANSFER)
        ctx.ticket = ticket
        if ticket.state in (p.TicketState.WAITING, p.TicketState.OFFERED):
            if self.state is State.IN_CALL:
                # the hub put the ticket back in the queue: the call is over
                ctx.call = None
                actions.insert(0, Action.END_CALL)
            if self.state is not State.WAITING:
                self._go(State.WAITING)
        return actions

    def _ticket_closed(self, ticket: p.TicketUpdate) -> list[Action]:
        ctx = self.context
        reason = ticket.reason
        if reason is p.CloseReason.TRANSFERRED:
            # a new ticket at the other centre follows under the same case
            actions = [Action.END_CALL] if self.state is State.IN_CALL else []
            ctx.note = "正在为您转接，请稍候"
            ctx.ticket, ctx.call = None, None
            if self.state is not State.WAITING:
                self._go(State.WAITING)
            return actions
        if reason is p.CloseReason.KIOSK_GONE:
            # the hub gave us up while we were away: ask again under the same case
            ctx.ticket, ctx.call = None, None
            ctx.note = "网络中断时间较长，正在为您重新排队"
            self._go(State.REQUEST)
            return [Action.END_CALL, Action.SEND_TICKET]
        ctx.ticket, ctx.call = None, None
        text = ("本次办理已结束。" if reason is p.CloseReason.COMPLETED
                else "本次排队已取消，没有办理。")
        ctx.receipt = ev.Receipt(kind="ended" if reason is p.CloseReason.COMPLETED
                                 else "cancelled", text=text)
        self._go(State.RESULT)
        return [Action.END_CALL, Action.SHOW_RECEIPT]

    def _on_service_closed(self, e: ev.ServiceClosed) -> list[Action]:
        self._expect(State.REQUEST, State.WAITING, State.HUB_UNREACHABLE)
        self.context.closed = e
        self.context.ticket = None
        self._go(State.CLOSED)
        return []

    def _on_call_started(self, e: ev.CallStarted) -> list[Action]:
        self._expect(State.REQUEST, State.WAITING, State.IN_CALL, State.HUB_UNREACHABLE)
        self.context.call = e.call
        self.context.note = None
        if self.state is not State.IN_CALL:
            self._go(State.IN_CALL)
        return [Action.START_CALL, Action.UPLOAD_PACKAGE]

    def _on_call_ended(self, e: ev.CallEnded) -> list[Action]:
        self._expect(State.IN_CALL)
        reason, ctx = e.reason, self.context
        ctx.call = None
        if reason is p.CallEndReason.RESTARTED:
            ctx.note = "正在重新连接，请稍候"
            return [Action.END_CALL]  # a new call.start follows under the same ticket
        if reason in (p.CallEndReason.COMPLETED, p.CallEndReason.CANCELLED):
            ctx.ticket = None
            ctx.receipt = ev.Receipt(kind="ended", text="本次办理已结束。")
            self._go(State.RESULT)
            return [Action.END_CALL, Action.SHOW_RECEIPT]
        if reason is p.CallEndReason.KIOSK_GONE:
            ctx.ticket = None
            ctx.note = "网络中断时间较长，正在为您重新排队"
            self._go(State.REQUEST)
            return [Action.END_CALL, Action.SEND_TICKET]
        # declined, transferred, hung up, failed, the clerk gone: back in a queue, nothing lost;
        # the place in it is unknown until the hub's next update says it
        if ctx.ticket is not None:
            ctx.ticket = ctx.ticket.model_copy(update={
                "state": p.TicketState.WAITING, "position": None, "expected_wait_s": None})
        ctx.note = {p.CallEndReason.TRANSFERRED: "正在为您转接，请稍候",
                    p.CallEndReason.DECLINED: "请稍候，您排在最前面",
                    }.get(reason, "通话中断了，您排在最前面，请稍候")
        self._go(State.WAITING)
        return [Action.END_CALL]

    def _on_receipt(self, e: ev.ReceiptGiven) -> list[Action]:
        self._expect(State.IN_CALL, State.WAITING)
        self.context.receipt = e.receipt
        self.context.call = None
        self._go(State.RESULT)
        return [Action.END_CALL, Action.SHOW_RECEIPT]

    def _on_finish(self, e: ev.Finish) -> list[Action]:
        self._expect(State.RESULT, State.CLOSED)
        return self._wipe()

    def _on_cancel(self, e: ev.Cancel) -> list[Action]:
        actions = [Action.END_CALL] if self.state is State.IN_CALL else []
        if self.context.ticket and self.state in (State.WAITING, State.IN_CALL,
                                                  State.HUB_UNREACHABLE):
            actions.append(Action.CANCEL_TICKET)
        return actions + self._wipe()

    def _on_back(self, e: ev.Back) -> list[Action]:
        steps = {State.CHOOSE_MATTER: State.CHOOSE_CENTRE, State.READ_CARD: State.CHOOSE_MATTER,
                 State.VERIFY_FACE: State.READ_CARD, State.CHOOSE_CENTRE: State.IDLE,
                 State.CLOSED: State.CHOOSE_MATTER, State.DEVICE_FAULT: State.IDLE}
        if self.state is State.CAPTURE:
            if self.context.index == 0:
                if self.context.face_failures >= self.face_attempts:
                    raise TransitionError("no face checks left: the clerk verifies")
                self.context.face = None
                self._go(State.VERIFY_FACE)
                return [Action.START_FACE_CHECK]
            self.context.index -= 1
            return [Action.START_CAPTURE]
        target = steps.get(self.state)
        if target is None:
            raise TransitionError(f"no way back from {self.state.value}")
        if target is State.IDLE:
            return self._wipe()
        self._go(target)
        return {State.READ_CARD: [Action.START_CARD_READER],
                State.CHOOSE_MATTER: [], State.CHOOSE_CENTRE: []}.get(target, [])

    def _on_device_fault(self, e: ev.DeviceFault) -> list[Action]:
        self.context.fault = e.device
        actions = [Action.CANCEL_TICKET] if self.context.ticket else []
        self._go(State.DEVICE_FAULT)
        return actions

    def _on_hub_unreachable(self, e: ev.HubUnreachable) -> list[Action]:
        if self.state in (State.REQUEST, State.WAITING, State.IN_CALL):
            self.resume_to = self.state
            self._go(State.HUB_UNREACHABLE)
        return []

    def _on_hub_back(self, e: ev.HubBack) -> list[Action]:
        self._expect(State.HUB_UNREACHABLE)
        target = self.resume_to or State.REQUEST
        self._go(target)
        return [Action.SEND_TICKET] if target is State.REQUEST else []
