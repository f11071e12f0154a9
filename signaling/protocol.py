"""The wire protocol between the hub, kiosks and desk servers: one typed, versioned model per
event. Kiosk and desk import these; the hub validates every event against them.

Events are socket.io events whose single argument is the model as JSON. Every model carries
``v`` (the protocol version) and refuses unknown fields. Large things (papers, photos) never
travel here: they go over HTTPS to the desk.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

PROTOCOL_VERSION = 1
MAX_EVENT_BYTES = 64 * 1024
"""The largest event payload accepted (an SDP with many candidates is ~10 KB)."""

ClientId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$")]
Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
Sdp = Annotated[str, StringConstraints(max_length=60_000)]


class Message(BaseModel):
    """Base of every event payload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1


class ClientKind(StrEnum):
    KIOSK = "kiosk"
    DESK = "desk"


class TicketState(StrEnum):
    WAITING = "waiting"
    """In the queue."""
    OFFERED = "offered"
    """Offered to one clerk (automatic routing, or a transfer to a named clerk)."""
    IN_CALL = "in_call"
    """Accepted: the call is being set up or running."""
    CLOSED = "closed"


class CloseReason(StrEnum):
    CANCELLED = "cancelled"
    """The citizen gave up (or the kiosk's session ended)."""
    COMPLETED = "completed"
    """The case was dealt with in the call."""
    KIOSK_GONE = "kiosk_gone"
    """The kiosk stayed away longer than the grace period."""
    TRANSFERRED = "transferred"
    """Handed to another centre under a new ticket (the case follows)."""


class CallEndReason(StrEnum):
    """Why a call ended (``call.ended``)."""

    COMPLETED = "completed"
    """The case was dealt with; the ticket closes."""
    HANGUP = "hangup"
    """The other party hung up without completing: the ticket goes back to the queue."""
    FAILED = "failed"
    """The call could not be held (e.g. the clerk's browser stayed away)."""
    RESTARTED = "restarted"
    """Replaced by a new call under the same ticket (a ``call.start`` follows)."""
    CLERK_GONE = "clerk_gone"
    """The clerk's desk stayed away longer than the grace period."""
    DECLINED = "declined"
    """The clerk handed the ticket back to the front of the queue."""
    TRANSFERRED = "transferred"
    """The clerk transferred the citizen to another clerk or centre."""
    CANCELLED = "cancelled"
    """The citizen gave up."""
    KIOSK_GONE = "kiosk_gone"
    """The kiosk stayed away longer than the grace period."""


# -- kiosk to hub -------------------------------------------------------------------------------

class TicketRequest(Message):
    """``ticket.request``: join the queue of (centre, matter) for one case."""

    centre: Code
    matter: Code
    case_id: Token


class TicketCancel(Message):
    """``ticket.cancel``: the citizen gives up waiting (or the session ends)."""

    ticket_id: Token


# -- desk to hub --------------------------------------------------------------------------------

class ClerkPresence(Message):
    """``clerk.presence``: a clerk of this desk signs in, changes availability, or leaves."""

    clerk_id: ClientId
    centre: Code
    matters: list[Code] = Field(max_length=200)
    available: bool
    signed_in: bool = True


class QueueWatch(Message):
    """``queue.watch``: send this desk the queue of a centre it serves, now and on change."""

    centre: Code


class TicketAccept(Message):
    """``ticket.accept``: a clerk takes a ticket (picked from the list, or offered)."""

    ticket_id: Token
    clerk_id: ClientId


class TicketDecline(Message):
    """``ticket.decline``: the offered ticket goes back to the front of its queue."""

    ticket_id: Token
    clerk_id: ClientId


class TicketTransfer(Message):
    """``ticket.transfer``: hand a ticket to another clerk or another centre's queue."""

    ticket_id: Token
    clerk_id: ClientId
    to_clerk: ClientId | None = None
    to_desk: ClientId | None = None
    """The desk of ``to_clerk`` when it is not the sender's own (clerk ids are the desk's)."""
    to_centre: Code | None = None

    @model_validator(mode="after")
    def _one_target(self) -> TicketTransfer:
        if (self.to_clerk is None) == (self.to_centre is None):
            raise ValueError("name exactly one of to_clerk and to_centre")
        if self.to_desk is not None and self.to_clerk is None:
            raise ValueError("to_desk names the desk of to_clerk")
        return self


# -- call set-up, both ways ---------------------------------------------------------------------

class CallOffer(Message):
    """``call.offer``: the kiosk's SDP offer, relayed to the clerk only."""

    call_id: Token
    sdp: Sdp


class CallAnswer(Message):
    """``call.answer``: the clerk's SDP answer, relayed to the kiosk only."""

    call_id: Token
    sdp: Sdp


class CallIce(Message):
    """``call.ice``: one trickled ICE candidate (None: end of candidates)."""

    call_id: Token
    candidate: Annotated[str, StringConstraints(max_length=2048)] | None = None
    sdp_mid: Annotated[str, StringConstraints(max_length=64)] | None = None
    sdp_mline_index: int | None = Field(None, ge=0, le=64)


class CallCommand(Message):
    """``call.command``: a clerk's request to the kiosk (the kiosk keeps the allow-list)."""

    call_id: Token
    name: Code
    args: dict[str, str | int | bool] = Field(default_factory=dict, max_length=16)


class CallRestart(Message):
    """``call.restart``: a broken connection is replaced by a new call under the same ticket
    (aiortc has no ICE restart)."""

    call_id: Token


class CallEnd(Message):
    """``call.end``: hang up; ``completed`` also closes the ticket."""

    call_id: Token
    reason: Literal["completed", "hangup", "failed"] = "hangup"


# -- hub to clients -----------------------------------------------------------------------------

class IceServer(Message):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class TicketUpdate(Message):
    """``ticket.update``: a ticket's state, position and expected wait, sent when what the
    citizen sees of them changes (``shown``). No ``expected_wait_s`` while waiting: nobody
    signed in serves the matter now, so no wait can be promised."""

    ticket_id: Token
    case_id: Token
    centre: Code
    matter: Code
    state: TicketState
    position: int | None = None
    expected_wait_s: int | None = None
    reason: CloseReason | None = None


def shown(state: TicketState, position: int | None, expected_wait_s: int | None) -> str:
    """What a citizen sees of a ticket update: its state, its position, and its expected wait
    as the kiosk words it (none, under a minute, or whole minutes). An update that does not
    change this is not sent."""
    if expected_wait_s is None:
        minutes = "-"
    else:
        minutes = "0" if expected_wait_s < 60 else str(round(expected_wait_s / 60))
    return f"{state.value}:{position}:{minutes}"


class ServiceClosed(Message):
    """``service.closed``: no queue now (outside working hours, or nobody signed in)."""

    centre: Code
    matter: Code
    reason: Literal["outside_hours", "no_clerk", "unknown_matter"]
    next_opening: datetime | None = None


class QueueItem(Message):
    ticket_id: Token
    matter: Code
    site: str
    waiting_s: int
    state: TicketState
    offered_to: str | None = None
    """The clerk (an id of their own desk) the ticket is offered to."""
    offered_desk: str | None = None
    """The desk of ``offered_to`` (clerk ids are scoped by desk)."""


class QueueSnapshot(Message):
    """``queue.snapshot``: a centre's queue, for its desks."""

    centre: Code
    routing: Literal["auto", "pick"]
    items: list[QueueItem]


class TicketOffered(Message):
    """``ticket.offered``: automatic routing offers a ticket to one clerk of this desk."""

    ticket_id: Token
    clerk_id: ClientId
    matter: Code
    site: str


class CallStart(Message):
    """``call.start``: both parties learn the call, their role and their ICE servers."""

    call_id: Token
    ticket_id: Token
    case_id: Token
    role: Literal["offerer", "answerer"]
    clerk_id: ClientId
    ice_servers: list[IceServer]


class CallPeerLost(Message):
    """``call.peer_lost``: the other party dropped; it has ``grace_s`` to come back."""

    call_id: Token
    grace_s: int


class CallPeerBack(Message):
    """``call.peer_back``: the other party resumed within the grace period."""

    call_id: Token


class CallEnded(Message):
    """``call.ended``: the call is over."""

    call_id: Token
    reason: CallEndReason


class Welcome(Message):
    """``hub.welcome``: sent on every connect: the resume token for the next reconnect, and
    what the client still holds if it resumed."""

    client_id: ClientId
    kind: ClientKind
    resume_token: Token
    resumed: bool
    tickets: list[TicketUpdate] = Field(default_factory=list)
    calls: list[CallStart] = Field(default_factory=list)


class HubError(Message):
    """``hub.error``: an event was refused."""

    code: Literal["invalid", "unknown_event", "too_large", "forbidden", "not_found",
                  "conflict", "closed", "internal", "rate_limited", "too_many_tickets"]
    message: str
    event: str | None = None
    retry_after_s: float | None = None
    """``rate_limited``: when this kind of event will be accepted again."""


INBOUND: dict[str, type[Message]] = {
    "ticket.request": TicketRequest,
    "ticket.cancel": TicketCancel,
    "clerk.presence": ClerkPresence,
    "queue.watch": QueueWatch,
    "ticket.accept": TicketAccept,
    "ticket.decline": TicketDecline,
    "ticket.transfer": TicketTransfer,
    "call.offer": CallOffer,
    "call.answer": CallAnswer,
    "call.ice": CallIce,
    "call.command": CallCommand,
    "call.restart": CallRestart,
    "call.end": CallEnd,
}
"""Every event a client may send, with its model."""

KIOSK_EVENTS = frozenset({"ticket.request", "ticket.cancel", "call.offer", "call.ice",
                          "call.restart", "call.end"})
DESK_EVENTS = frozenset({"clerk.presence", "queue.watch", "ticket.accept", "ticket.decline",
                         "ticket.transfer", "call.answer", "call.ice", "call.command",
                         "call.restart", "call.end"})

OUTBOUND: dict[str, type[Message]] = {
    "hub.welcome": Welcome,
    "hub.error": HubError,
    "ticket.update": TicketUpdate,
    "ticket.offered": TicketOffered,
    "service.closed": ServiceClosed,
    "queue.snapshot": QueueSnapshot,
    "call.start": CallStart,
    "call.offer": CallOffer,
    "call.answer": CallAnswer,
    "call.ice": CallIce,
    "call.command": CallCommand,
    "call.peer_lost": CallPeerLost,
    "call.peer_back": CallPeerBack,
    "call.ended": CallEnded,
}
"""Every event the hub sends, with its model."""


def dump(message: Message) -> dict[str, Any]:
    """A model as the JSON object that goes on the wire."""
    return message.model_dump(mode="json", exclude_none=False)
