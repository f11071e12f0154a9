"""The desk's one connection to the hub, shared by all its clerks.

Browsers never hold hub credentials: each clerk's browser talks to the desk over a same-origin
WebSocket (``/ws``, the session cookie and the CSRF token); the desk signs clerks in and out at
the hub on their behalf and relays call signaling both ways, and only for the clerk's own calls
and the centres the clerk belongs to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import socketio
import structlog
from aiohttp import web
from pydantic import ValidationError

from signaling import protocol as p
from signaling.client import HubClient

log = structlog.get_logger("remote_desk.hub")

FROM_BROWSER: dict[str, type[p.Message]] = {
    "clerk.presence": p.ClerkPresence,
    "ticket.accept": p.TicketAccept,
    "ticket.decline": p.TicketDecline,
    "ticket.transfer": p.TicketTransfer,
    "call.answer": p.CallAnswer,
    "call.ice": p.CallIce,
    "call.command": p.CallCommand,
    "call.restart": p.CallRestart,
    "call.end": p.CallEnd,
}
"""What a clerk's browser may ask the desk to send to the hub."""

TO_CLERK_BY_CALL = ("call.offer", "call.ice", "call.peer_lost", "call.peer_back",
                    "call.ended")
SIGN_OUT_STEP_TIMEOUT_S = 5.0
"""How long signing a clerk out waits for the hub to carry out each step."""


@dataclass
class ClerkLink:
    """One clerk's browser connection."""

    clerk_id: str
    centres: list[str]
    ws: web.WebSocketResponse
    calls: set[str] = field(default_factory=set)


class HubLink:
    """Owns the hub connection and the clerks' browser sockets."""

    def __init__(self, client: HubClient, centres: list[str], *,
                 browser_grace_s: float = 15.0) -> None:
        self.client = client
        self.centres = centres
        self.clerks: dict[str, ClerkLink] = {}
        self.call_owner: dict[str, str] = {}
        self.browser_grace_s = browser_grace_s
        """A clerk whose browser closed during a call has this long to come back; then the
        call ends and the citizen goes back to the front of the queue."""
        self._pump: asyncio.Task[None] | None = None
        self._orphans: dict[str, asyncio.Task[None]] = {}
        self._owed_offline: dict[str, list[p.ClerkPresence]] = {}
        """Sign-outs of clerks whose browser closed while the hub was away: sent when the desk
        is back at the hub, unless the clerk came back first."""
        self.presence: dict[tuple[str, str], p.ClerkPresence] = {}
        """Each clerk's last word on availability per centre (told again to a new hub)."""
        self._welcomes = 0
        self.on_transfer: Callable[[str, str, str], Awaitable[bool]] | None = None
        """Called (case id, target centre, clerk id) when one of this desk's clerks transfers
        a citizen to another centre: the case store marks the case so that it may follow."""
        self.on_transfer_refused: Callable[[str, str, str], Awaitable[bool]] | None = None
        """Called with the same (case id, centre, clerk id) when the hub refused it."""
        self._transfers: dict[str, tuple[str, str, str]] = {}
        """call id -> (case id, target centre, clerk id) of transfers the hub has not yet
        carried out (it ends the call as transferred) nor refused."""
        self._taken_back: dict[str, tuple[str, str, str]] = {}
        """Transfers whose marks a refusal took back while it was unclear which one it was."""
        self._starts: dict[str, p.CallStart] = {}
        """The calls this desk's clerks hold, by call id (to know a transferred case)."""
        self._queued: dict[str, set[str]] = {}
        """Each centre's tickets in its latest queue snapshot (a clerk takes only tickets of
        their own centres)."""
        self._offers: dict[str, str] = {}
        """clerk id -> the ticket last offered to them and not yet taken (the hub holds one
        offer per clerk; it is handed back at sign-out)."""
        client.listener = self.from_hub

    async def _rejoin(self, welcome: p.Welcome) -> None:
        """After a reconnect: watch the queues again (rooms belong to the old socket) and, if
        the hub did not know us any more (it restarted without shared state), say again which
        clerks are signed in."""
        self._welcomes += 1
        if self._welcomes == 1:
            return  # start() watches the queues
        for centre in self.centres:
            await self.client.send("queue.watch", p.QueueWatch(centre=centre))
        owed, self._owed_offline = self._owed_offline, {}
        for clerk_id, offline in owed.items():
            if clerk_id not in self.clerks:
                for message in offline:
                    await self.client.send("clerk.presence", message)
        if not welcome.resumed:
            for (clerk_id, _), message in list(self.presence.items()):
                if clerk_id in self.clerks:
                    await self.client.send("clerk.presence", message)
        log.info("desk.hub_rejoined", resumed=welcome.resumed)

    async def start(self) -> None:
        """Connect, and ask for the queues of this desk's centres (sent again on change)."""
        await self.client.connect()
        for centre in self.centres:
            await self.client.send("queue.watch", p.QueueWatch(centre=centre))

    async def close(self) -> None:
        for task in self._orphans.values():
            task.cancel()
        await self.client.close()

    async def from_hub(self, event: str, message: p.Message) -> None:
        """Route one hub event (already parsed with its protocol model) to the clerk(s) it
        concerns."""
        link: ClerkLink | None
        if isinstance(message, p.Welcome):
            await self._rejoin(message)
        elif isinstance(message, p.QueueSnapshot):
            message = self._own_offers(message)
            self._queued[message.centre] = {i.ticket_id for i in message.items}
            for each in list(self.clerks.values()):
                if message.centre in each.centres:
                    await self._send(each, event, message)
        elif isinstance(message, p.TicketOffered | p.CallStart):
            link = self.clerks.get(message.clerk_id)
            if isinstance(message, p.TicketOffered):
                self._offers[message.clerk_id] = message.ticket_id
            elif self._offers.get(message.clerk_id) == message.ticket_id:
                del self._offers[message.clerk_id]
            if isinstance(message, p.CallStart) and link is not None:
                self.call_owner[message.call_id] = link.clerk_id
                self._starts[message.call_id] = message
                link.calls.add(message.call_id)
            if link is not None:
                await self._send(link, event, message)
        elif event in TO_CLERK_BY_CALL:
            call_id = str(getattr(message, "call_id", ""))
            owner = self.call_owner.get(call_id)
            link = self.clerks.get(owner) if owner else None
            if link is not None:
                await self._send(link, event, message)
            if isinstance(message, p.CallEnded):
                self._starts.pop(call_id, None)
                self._transfers.pop(call_id, None)  # carried out (or the call is over)
                again = self._taken_back.pop(call_id, None)
                if again is not None and message.reason is p.CallEndReason.TRANSFERRED \
                        and self.on_transfer is not None:
                    await self.on_transfer(*again)  # not the refused one after all
            if isinstance(message, p.CallEnded) and owner:
                self.call_owner.pop(call_id, None)
                if link:
                    link.calls.discard(call_id)
        elif isinstance(message, p.HubError):
            log.info("desk.hub_refused", code=message.code, hub_event=message.event)
            if message.event == "ticket.transfer":
                await self._transfer_refused(message)

    async def _transfer_refused(self, error: p.HubError) -> None:
        """The hub refused a transfer: the marks of the transfers still pending are taken
        back, and the clerks who asked are told why. The refusal does not say which transfer
        it was; one of them carried out after all ends its call as transferred, and is
        marked again then."""
        pending, self._transfers = self._transfers, {}
        for call_id, (case_id, centre, clerk_id) in pending.items():
            self._taken_back[call_id] = (case_id, centre, clerk_id)
            if self.on_transfer_refused is not None:
                await self.on_transfer_refused(case_id, centre, clerk_id)
            link = self.clerks.get(clerk_id)
            if link is not None:
                await self._send(link, "hub.error", error)

    def _own_offers(self, snapshot: p.QueueSnapshot) -> p.QueueSnapshot:
        """Clerk ids are each desk's own: an item offered to another desk's clerk shows as
        offered, to nobody here (that desk's ``wang`` is not ours)."""
        if all(i.offered_desk in (None, self.client.client_id) for i in snapshot.items):
            return snapshot
        items = [i if i.offered_desk in (None, self.client.client_id)
                 else i.model_copy(update={"offered_to": None}) for i in snapshot.items]
        return snapshot.model_copy(update={"items": items})

    @staticmethod
    async def _send(link: ClerkLink, event: str, message: p.Message) -> None:
        if not link.ws.closed:
            await link.ws.send_json({"event": event, "data": p.dump(message)})

    async def from_browser(self, link: ClerkLink, event: str, data: Any) -> str | None:
        """Check and forward one browser request; returns an error message or None."""
        model = FROM_BROWSER.get(event)
        if model is None:
            return f"unknown event {event[:40]}"
        try:
            message = model.model_validate(data)
        except ValidationError as exc:
            return f"invalid {event}: {exc.errors()[0]['msg']}"
        clerk = getattr(message, "clerk_id", link.clerk_id)
        if clerk != link.clerk_id:
            return "a clerk acts only as themself"
        if isinstance(message, p.ClerkPresence) and message.centre not in link.centres:
            return "not a centre of this clerk"
        if isinstance(message, p.ClerkPresence):
            self.presence[(link.clerk_id, message.centre)] = message
        if isinstance(message, p.TicketAccept) and any(
                message.ticket_id in tickets for centre, tickets in self._queued.items()
                if centre not in link.centres):
            return "not a centre of this clerk"  # the hub checks it too
        call_id = getattr(message, "call_id", None)
        if call_id is not None and self.call_owner.get(call_id) != link.clerk_id:
            return "not your call"
        if isinstance(message, p.TicketTransfer) and message.to_centre is not None \
                and self.on_transfer is not None:
            start = next((c for c in self._starts.values()
                          if c.ticket_id == message.ticket_id and c.clerk_id == link.clerk_id),
                         None)
            if start is not None:  # the case may follow only where its clerk sent it
                self._transfers[start.call_id] = (start.case_id, message.to_centre,
                                                  link.clerk_id)
                await self.on_transfer(start.case_id, message.to_centre, link.clerk_id)
        await self.client.send(event, message)
        return None

    def attach(self, link: ClerkLink) -> None:
        old = self.clerks.get(link.clerk_id)
        if old is not None:
            link.calls |= old.calls
        self.clerks[link.clerk_id] = link
        orphan = self._orphans.pop(link.clerk_id, None)
        if orphan is not None:
            orphan.cancel()
        self._owed_offline.pop(link.clerk_id, None)

    async def detach(self, link: ClerkLink) -> None:
        if self.clerks.get(link.clerk_id) is link:
            del self.clerks[link.clerk_id]
            for key in [k for k in self.presence if k[0] == link.clerk_id]:
                del self.presence[key]
            offline = [p.ClerkPresence(clerk_id=link.clerk_id, centre=centre, matters=[],
                                       available=False) for centre in link.centres]
            try:  # a closed browser is not available for new tickets
                for message in offline:
                    await self.client.send("clerk.presence", message)
            except socketio.exceptions.SocketIOError:  # the hub is away (or the desk stopping)
                self._owed_offline[link.clerk_id] = offline
                log.info("desk.sign_out_owed", clerk=link.clerk_id)
            calls = {c for c, owner in self.call_owner.items() if owner == link.clerk_id}
            if calls:
                self._orphans[link.clerk_id] = asyncio.ensure_future(
                    self._end_orphaned(link.clerk_id, calls))

    def release(self, clerk_id: str, sockets: set[web.WebSocketResponse]) -> None:
        """Stop relaying to the clerk now if their current browser socket is one of
        ``sockets`` (a session that ended; ``sign_out`` follows)."""
        link = self.clerks.get(clerk_id)
        if link is not None and link.ws in sockets:
            del self.clerks[clerk_id]

    def in_call(self, clerk_id: str) -> bool:
        """Whether the clerk holds a call (their session is not idle while they talk)."""
        return clerk_id in self.call_owner.values()

    async def sign_out(self, clerk_id: str, centres: list[str], *,
                       reason: Literal["hangup", "failed"] = "failed") -> None:
        """The clerk's session ended (logout, expiry, account disabled or changed): from now
        on nothing reaches or leaves their browser; at the hub their calls end (each citizen
        goes back to the front of the queue), their offers go back, and they are signed out
        of every centre. Each step waits for the hub (a sign-out is refused while the clerk
        still holds a call)."""
        link = self.clerks.pop(clerk_id, None)
        orphan = self._orphans.pop(clerk_id, None)
        if orphan is not None:
            orphan.cancel()
        for key in [k for k in self.presence if k[0] == clerk_id]:
            del self.presence[key]
        calls = [c for c, owner in self.call_owner.items() if owner == clerk_id]
        for call_id in calls:
            self.call_owner.pop(call_id, None)
            self._starts.pop(call_id, None)
            if link is not None:
                link.calls.discard(call_id)
        mine = [centre for centre in centres if centre in self.centres]
        for centre in mine:  # first away, so that nothing new is offered meanwhile
            await self._carried_out("clerk.presence", p.ClerkPresence(
                clerk_id=clerk_id, centre=centre, matters=[], available=False))
        for call_id in calls:
            await self._carried_out("call.end", p.CallEnd(call_id=call_id, reason=reason))
        offered = self._offers.pop(clerk_id, None)
        if offered is not None:  # refused harmlessly if it lapsed meanwhile
            await self._carried_out("ticket.decline", p.TicketDecline(ticket_id=offered,
                                                                      clerk_id=clerk_id))
        for centre in mine:
            await self._carried_out("clerk.presence", p.ClerkPresence(
                clerk_id=clerk_id, centre=centre, matters=[], available=False,
                signed_in=False))
        log.info("desk.clerk_signed_out", clerk=clerk_id, calls=len(calls))

    async def _carried_out(self, event: str, message: p.Message) -> None:
        """Send one event and wait until the hub has handled it (its acknowledgement); the
        hub handles each event in a task of its own, so order needs the wait."""
        try:
            await self.client.sio.call(event, p.dump(message),
                                       timeout=SIGN_OUT_STEP_TIMEOUT_S)
        except (TimeoutError, socketio.exceptions.SocketIOError) as exc:
            log.warning("desk.hub_step_failed", hub_event=event, error=type(exc).__name__)

    async def _end_orphaned(self, clerk_id: str, calls: set[str]) -> None:
        """The clerk's browser did not come back: their calls end as failed, which puts each
        citizen back at the front of the queue for the next clerk."""
        await asyncio.sleep(self.browser_grace_s)
        self._orphans.pop(clerk_id, None)
        for call_id in calls:
            if self.call_owner.get(call_id) == clerk_id:
                log.info("desk.clerk_browser_gone", clerk=clerk_id)
                await self.client.send("call.end", p.CallEnd(call_id=call_id, reason="failed"))
                self.call_owner.pop(call_id, None)
