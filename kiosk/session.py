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

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kiosk.catalogue import Catalogue, Material


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
    materials: list[Material] = field(default_factory=list)
    index: int = 0
    captured: dict[str, int] = field(default_factory=dict)
    """Pages captured per material code."""
    skipped: list[str] = field(default_factory=list)
    ticket: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None
    closed: dict[str, Any] | None = None
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

    # -- the screen ---------------------------------------------------------------------------

    def screen(self) -> dict[str, Any]:
        """What the touch screen shows now (no personal data beyond what the step needs)."""
        out: dict[str, Any] = {"state": self.state.value, "prompt": PROMPTS[self.state],
                               "still_there": self.asking_still_there}
        if self.asking_still_there:
            out["prompt"] = STILL_THERE
        if self.state is State.CHOOSE_MATTER:
            out["centre"] = self.context.centre
        if self.state is State.CAPTURE and self.context.materials:
            material = self.context.materials[self.context.index]
            out.update(material=material.name, key=material.key, card=material.card,
                       step=self.context.index + 1, steps=len(self.context.materials),
                       captured=self.context.captured.get(material.code, 0))
        if self.state is State.WAITING and self.context.ticket:
            out.update(position=self.context.ticket.get("position"),
                       expected_wait_s=self.context.ticket.get("expected_wait_s"))
        if self.state is State.CLOSED and self.context.closed:
            out.update(self.context.closed)
        if self.state is State.RESULT and self.context.receipt:
            out.update(receipt=self.context.receipt)
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

    def handle(self, event: str, now: float, **data: Any) -> list[Action]:
        """One event from the screen, a device, the hub or the desk."""
        self.now = now
        method = getattr(self, f"_on_{event}", None)
        if method is None:
            raise TransitionError(f"unknown event {event}")
        if event in ("touch", "choose_centre", "choose_matter", "back", "cancel", "skip",
                     "retake", "still_here", "done"):
            self.last_touch = now
            if self.asking_still_there:
                self.asking_still_there = False
                if event in ("touch", "still_here"):
                    return []
        actions: list[Action] = method(**data)
        return actions

    def _expect(self, *states: State) -> None:
        if self.state not in states:
            raise TransitionError(f"not accepted in {self.state.value}")

    # -- the steps ----------------------------------------------------------------------------

    def _on_touch(self) -> list[Action]:
        if self.state is State.IDLE:
            self._go(State.CHOOSE_CENTRE)
        return []

    def _on_still_here(self) -> list[Action]:
        return []

    def _on_choose_centre(self, centre: str) -> list[Action]:
        self._expect(State.CHOOSE_CENTRE)
        if self.catalogue.centre(centre) is None:
            raise TransitionError("unknown centre")
        self.context.centre = centre
        self._go(State.CHOOSE_MATTER)
        return []

    def _on_choose_matter(self, matter: str, by_proxy: bool = False) -> list[Action]:
        self._expect(State.CHOOSE_MATTER)
        found = self.catalogue.matter(matter)
        if found is None or self.context.centre not in found.centres:
            raise TransitionError("this matter is not handled at that centre")
        if by_proxy and not found.proxy:
            raise TransitionError("this matter cannot be applied for by an agent")
        self.context.matter, self.context.by_proxy = matter, by_proxy
        self.context.materials = found.checklist(by_proxy=by_proxy)
        self._go(State.READ_CARD)
        return [Action.START_CARD_READER]

    def _on_card_read(self, card: dict[str, Any]) -> list[Action]:
        self._expect(State.READ_CARD)
        self.context.card = card
        self._go(State.VERIFY_FACE)
        return [Action.START_FACE_CHECK]

    def _on_card_removed(self) -> list[Action]:
        # removal matters only while the face is being compared with the card just read
        if self.state is State.VERIFY_FACE:
            self.context.card = None
            self._go(State.READ_CARD)
            return [Action.START_CARD_READER]
        return []

    def _on_face_result(self, decision: str, liveness: bool,
                        record: dict[str, Any] | None = None) -> list[Action]:
        self._expect(State.VERIFY_FACE)
        self.context.verification = {"decision": decision, "liveness": liveness,
                                     **(record or {})}
        if decision in ("match", "review") and liveness:
            self.context.index = 0
            self._go(State.CAPTURE)
            return [Action.START_CAPTURE]
        return []  # stays: the screen offers "try again" (retake) or "back"

    def _on_retake(self, material: str | None = None) -> list[Action]:
        if self.state is State.VERIFY_FACE:
            return [Action.START_FACE_CHECK]
        self._expect(State.CAPTURE)
        # retake: the pages of this material (the current one unless named) are dropped
        code = material or self.context.materials[self.context.index].code
        self.context.captured.pop(code, None)
        return [Action.START_CAPTURE]

    def _advance(self) -> list[Action]:
        self.context.index += 1
        if self.context.index >= len(self.context.materials):
            self._go(State.REQUEST)
            return [Action.SEND_TICKET]
        return [Action.START_CAPTURE]

    def _on_captured(self, material: str, pages: int = 1) -> list[Action]:
        self._expect(State.CAPTURE)
        current = self.context.materials[self.context.index]
        if material != current.code:
            raise TransitionError("captured a material out of turn")
        self.context.captured[material] = self.context.captured.get(material, 0) + pages
        return []

    def _on_done(self) -> list[Action]:
        """The citizen confirms the current material (all its pages) and moves on."""
        self._expect(State.CAPTURE)
        current = self.context.materials[self.context.index]
        if not self.context.captured.get(current.code):
            raise TransitionError("nothing captured for this material yet")
        return self._advance()

    def _on_skip(self) -> list[Action]:
        self._expect(State.CAPTURE)
        current = self.context.materials[self.context.index]
        if current.key:
            raise TransitionError("a key material cannot be skipped")
        self.context.skipped.append(current.code)
        return self._advance()

    def _on_queued(self, ticket: dict[str, Any]) -> list[Action]:
        self._expect(State.REQUEST, State.WAITING, State.HUB_UNREACHABLE)
        self.context.ticket = ticket
        if self.state is not State.WAITING:
            self._go(State.WAITING)
        return []

    def _on_service_closed(self, reason: str, next_opening: str | None = None) -> list[Action]:
        self._expect(State.REQUEST)
        self.context.closed = {"reason": reason, "next_opening": next_opening}
        self._go(State.CLOSED)
        return []

    def _on_call_started(self, call: dict[str, Any]) -> list[Action]:
        self._expect(State.WAITING, State.IN_CALL)
        self.context.ticket = {**(self.context.ticket or {}), "call": call}
        self._go(State.IN_CALL)
        return [Action.START_CALL, Action.UPLOAD_PACKAGE]

    def _on_call_ended(self, reason: str) -> list[Action]:
        self._expect(State.IN_CALL)
        if reason in ("clerk_gone", "declined", "transferred", "hangup", "failed"):
            self._go(State.WAITING)  # the ticket is back in a queue: nothing is lost
            return [Action.END_CALL]
        return [Action.END_CALL]

    def _on_receipt(self, receipt: dict[str, Any]) -> list[Action]:
        self._expect(State.IN_CALL, State.WAITING)
        self.context.receipt = receipt
        self._go(State.RESULT)
        return [Action.END_CALL, Action.SHOW_RECEIPT]

    def _on_finish(self) -> list[Action]:
        self._expect(State.RESULT, State.CLOSED)
        return self._wipe()

    def _on_cancel(self) -> list[Action]:
        actions = [Action.END_CALL] if self.state is State.IN_CALL else []
        if self.context.ticket and self.state in (State.WAITING, State.IN_CALL,
                                                  State.HUB_UNREACHABLE):
            actions.append(Action.CANCEL_TICKET)
        return actions + self._wipe()

    def _on_back(self) -> list[Action]:
        steps = {State.CHOOSE_MATTER: State.CHOOSE_CENTRE, State.READ_CARD: State.CHOOSE_MATTER,
                 State.VERIFY_FACE: State.READ_CARD, State.CHOOSE_CENTRE: State.IDLE,
                 State.CLOSED: State.CHOOSE_MATTER, State.DEVICE_FAULT: State.IDLE}
        if self.state is State.CAPTURE:
            if self.context.index == 0:
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

    def _on_device_fault(self, device: str) -> list[Action]:
        self.context.fault = device
        actions = [Action.CANCEL_TICKET] if self.context.ticket else []
        self._go(State.DEVICE_FAULT)
        return actions

    def _on_hub_unreachable(self) -> list[Action]:
        if self.state in (State.REQUEST, State.WAITING, State.IN_CALL):
            self.resume_to = self.state
            self._go(State.HUB_UNREACHABLE)
        return []

    def _on_hub_back(self) -> list[Action]:
        self._expect(State.HUB_UNREACHABLE)
        target = self.resume_to or State.REQUEST
        self._go(target)
        return [Action.SEND_TICKET] if target is State.REQUEST else []
