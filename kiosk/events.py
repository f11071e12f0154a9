"""Every event the citizen's session takes, one model each, and the list of them written once.

The touch screen may send only the events marked ``from_screen`` (parsed here at its HTTP
boundary); devices, the hub (through ``signaling.protocol`` models, already parsed by the hub
client) and the desk (a receipt through the call) are fed to the session by the kiosk service.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from kiosk.words import opening_words
from signaling import protocol as p

Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class SessionEvent(BaseModel):
    """Base of every session event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str]
    from_screen: ClassVar[bool] = False
    """The citizen's own touch: the only events the screen may send; each counts as activity."""


# -- the citizen's touches ----------------------------------------------------------------------

class Touch(SessionEvent):
    """A tap on the screen (on the idle screen: start)."""

    name = "touch"
    from_screen = True


class StillHere(SessionEvent):
    """"I'm still here" after the inactivity question."""

    name = "still_here"
    from_screen = True


class ChooseCentre(SessionEvent):
    name = "choose_centre"
    from_screen = True

    centre: Code


class ChooseMatter(SessionEvent):
    name = "choose_matter"
    from_screen = True

    matter: Code
    by_proxy: bool = False


class Back(SessionEvent):
    name = "back"
    from_screen = True


class Cancel(SessionEvent):
    """The citizen gives up (at any step, also while waiting or in the call)."""

    name = "cancel"
    from_screen = True


class Skip(SessionEvent):
    """No such paper (a non-key material only)."""

    name = "skip"
    from_screen = True


class Retake(SessionEvent):
    """Try the face check again, or capture a material's pages again."""

    name = "retake"
    from_screen = True

    material: Code | None = None


class Done(SessionEvent):
    """All pages of the current material are captured."""

    name = "done"
    from_screen = True


class Finish(SessionEvent):
    """The citizen has read the result (or the closed notice): wipe."""

    name = "finish"
    from_screen = True


# -- devices ------------------------------------------------------------------------------------

class CardRead(SessionEvent):
    name = "card_read"

    card: dict[str, Any]


class CardRemoved(SessionEvent):
    name = "card_removed"


class FaceResult(SessionEvent):
    name = "face_result"

    decision: str
    liveness: bool
    record: dict[str, Any] | None = None
    challenge_id: str = Field("", max_length=64)
    """The liveness challenge this result answers: each is accepted once."""


class Captured(SessionEvent):
    name = "captured"

    material: Code
    pages: int = Field(1, ge=1, le=100)


class DeviceFault(SessionEvent):
    name = "device_fault"

    device: str


# -- the hub --------------------------------------------------------------------------------------

class HubUnreachable(SessionEvent):
    name = "hub_unreachable"


class HubBack(SessionEvent):
    name = "hub_back"


class TicketChanged(SessionEvent):
    """``ticket.update`` for this session's case."""

    name = "ticket_changed"

    ticket: p.TicketUpdate


class ServiceClosed(SessionEvent):
    """``service.closed``: with the next opening already in words (the service knows the
    date; the session does no I/O)."""

    name = "service_closed"

    closed: p.ServiceClosed
    opening_words: str | None = None


class CallStarted(SessionEvent):
    """``call.start`` for this session's case."""

    name = "call_started"

    call: p.CallStart


class CallEnded(SessionEvent):
    """``call.ended`` of this session's current call."""

    name = "call_ended"

    reason: p.CallEndReason


# -- the desk (through the call) ------------------------------------------------------------------

class Receipt(BaseModel):
    """What the clerk's decision gives the citizen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    case_number: Annotated[str, StringConstraints(max_length=64)] = ""
    kind: Annotated[str, StringConstraints(max_length=32)] = ""
    text: Annotated[str, StringConstraints(max_length=2000)] = ""


class ReceiptGiven(SessionEvent):
    name = "receipt"

    receipt: Receipt


EVENTS: dict[str, type[SessionEvent]] = {cls.name: cls for cls in (
    Touch, StillHere, ChooseCentre, ChooseMatter, Back, Cancel, Skip, Retake, Done, Finish,
    CardRead, CardRemoved, FaceResult, Captured, DeviceFault,
    HubUnreachable, HubBack, TicketChanged, ServiceClosed, CallStarted, CallEnded,
    ReceiptGiven)}
"""Every session event by name."""

SCREEN_EVENTS = frozenset(name for name, cls in EVENTS.items() if cls.from_screen)
"""What the touch screen may send."""


class EventError(ValueError):
    """A screen event that is unknown, not the screen's to send, or malformed."""


def from_screen(name: str, data: Any) -> SessionEvent:
    """Parse one event the touch screen sent; EventError says why it is refused."""
    cls = EVENTS.get(name)
    if cls is None or not cls.from_screen:
        raise EventError(f"not a touch event: {name[:40]}")
    try:
        return cls.model_validate(data if data is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "data"
        raise EventError(f"{name}: {where}: {first['msg']}") from None


def from_hub(message: p.Message, *, case_id: str | None, call_id: str | None,
             today: date | None = None) -> SessionEvent | None:
    """What one hub message means to the session holding ``case_id`` (in the call
    ``call_id``): its session event, or None when it is not the session's business (another
    case, an older call, the call's own signaling). The connection dropping is the hub
    client's own event: the service turns it into ``HubUnreachable``."""
    if isinstance(message, p.TicketUpdate):
        return TicketChanged(ticket=message) if message.case_id == case_id else None
    if isinstance(message, p.CallStart):
        return CallStarted(call=message) if message.case_id == case_id else None
    if isinstance(message, p.CallEnded):
        mine = call_id is not None and message.call_id == call_id
        return CallEnded(reason=message.reason) if mine else None
    if isinstance(message, p.ServiceClosed):
        words = None
        if message.next_opening is not None:
            opening = message.next_opening
            words = opening_words(opening, today or datetime.now(opening.tzinfo).date())
        return ServiceClosed(closed=message, opening_words=words)
    return None
