"""A case's life at the desk: its states, what may happen to it, and the one table of allowed
transitions. No I/O: the case service (``remote_desk.cases``) carries transitions out.

```
             受理 accept ──────────► accepted ─────────┐
 received ── 容缺受理 accept_pending ► accepted_pending ┴ 办结 complete ► completed (final)
    ▲  │ ─── 不予受理 refuse ───────► refused (final)
    │  └──── 补正 corrections ──────► corrections
    └──────── supplement / resubmit ────────┘   (the kiosk sends the corrected papers)
```
While a case is received (undecided) the kiosk may add pages to it, and a clerk may transfer
the citizen to another centre: the case follows when the kiosk files it there.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from enum import StrEnum
from types import MappingProxyType
from typing import Final, TypeAlias


class CaseState(StrEnum):
    RECEIVED = "received"
    """The package is in and nobody has decided (or the corrected papers came back)."""
    ACCEPTED = "accepted"
    """受理: accepted with complete papers; the case has its number."""
    ACCEPTED_PENDING = "accepted_pending"
    """容缺受理: accepted while non-key papers are missing, on the citizen's commitment."""
    CORRECTIONS = "corrections"
    """补正: the clerk asked for corrected or further papers; the kiosk sends them again."""
    REFUSED = "refused"
    """不予受理: refused with a reason. Final."""
    COMPLETED = "completed"
    """办结: dealt with. Final."""
    TRANSFERRED = "transferred"
    """移交: the citizen was transferred to a centre this desk does not serve, and the case
    went with them (the kiosk files it there). Nothing is decided here; it comes back to
    ``RECEIVED`` only if the hub refused the transfer or the citizen is sent back."""


class DecisionKind(StrEnum):
    """What a clerk decides (the API's and the page's ``kind``)."""

    ACCEPT = "accept"
    ACCEPT_PENDING = "accept_pending"
    CORRECTIONS = "corrections"
    REFUSE = "refuse"
    COMPLETE = "complete"

    @property
    def zh(self) -> str:
        """The decision's name on receipts and in the clerk's page."""
        return _KIND_ZH[self]


_KIND_ZH: Final = {DecisionKind.ACCEPT: "受理", DecisionKind.ACCEPT_PENDING: "容缺受理",
                   DecisionKind.CORRECTIONS: "补正", DecisionKind.REFUSE: "不予受理",
                   DecisionKind.COMPLETE: "办结"}


class CaseEvent(StrEnum):
    """What happens to a case besides a clerk's decision (named as in the audit trail)."""

    SUPPLEMENT = "supplement"
    """The kiosk adds pages (a re-scan, a full-resolution capture, a corrected page)."""
    RESUBMIT = "resubmit"
    """The kiosk sends the whole package again, corrected, under the same case id."""
    TRANSFER = "transfer"
    """A clerk transfers the citizen to another centre; the case may follow."""
    TRANSFER_IN = "transfer_in"
    """The kiosk files the case at the centre it was transferred to (or back at this one)."""
    TRANSFER_OUT = "transfer_out"
    """A clerk transfers the citizen to a centre of another desk: the case leaves this one."""
    TRANSFER_REFUSED = "transfer_refused"
    """The hub refused the transfer a clerk asked for: the case stays."""


Event: TypeAlias = DecisionKind | CaseEvent
"""Anything that moves a case."""

_S, _D, _E = CaseState, DecisionKind, CaseEvent
TRANSITIONS: Final[Mapping[CaseState, Mapping[Event, CaseState]]] = MappingProxyType({
    _S.RECEIVED: {_D.ACCEPT: _S.ACCEPTED, _D.ACCEPT_PENDING: _S.ACCEPTED_PENDING,
                  _D.CORRECTIONS: _S.CORRECTIONS, _D.REFUSE: _S.REFUSED,
                  _E.SUPPLEMENT: _S.RECEIVED, _E.TRANSFER: _S.RECEIVED,
                  _E.TRANSFER_IN: _S.RECEIVED, _E.TRANSFER_REFUSED: _S.RECEIVED,
                  _E.TRANSFER_OUT: _S.TRANSFERRED},
    _S.ACCEPTED: {_D.COMPLETE: _S.COMPLETED},
    _S.ACCEPTED_PENDING: {_D.COMPLETE: _S.COMPLETED},
    _S.CORRECTIONS: {_E.SUPPLEMENT: _S.RECEIVED, _E.RESUBMIT: _S.RECEIVED},
    _S.REFUSED: {},
    _S.COMPLETED: {},
    _S.TRANSFERRED: {_E.TRANSFER_REFUSED: _S.RECEIVED, _E.TRANSFER_IN: _S.RECEIVED},
})
"""Every allowed transition: state -> {event: next state}. Anything not here is refused."""

NUMBERED: Final = frozenset({DecisionKind.ACCEPT, DecisionKind.ACCEPT_PENDING})
"""Decisions that give a case its number (a case keeps the number it has)."""


class TransitionRefused(Exception):
    """``event`` is not allowed in ``state``; the message says why in one sentence."""

    def __init__(self, state: CaseState, event: Event, decided_by: str | None = None) -> None:
        super().__init__(refusal(state, event, decided_by))
        self.state = state
        self.event = event


def next_state(state: CaseState, event: Event, decided_by: str | None = None) -> CaseState:
    """The state ``event`` leads to from ``state``, or ``TransitionRefused``."""
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise TransitionRefused(state, event, decided_by) from None


def refusal(state: CaseState, event: Event, decided_by: str | None = None) -> str:
    """Why ``event`` cannot happen in ``state`` (for the clerk, or the kiosk's log)."""
    if state is CaseState.RECEIVED:
        if event is DecisionKind.COMPLETE:
            return "this case was not accepted: only an accepted case can be completed (办结)"
        return "another package already holds this case id (it is undecided and nobody asked " \
               "for corrections)"
    if state is CaseState.TRANSFERRED:
        return "this case was transferred to another centre with its citizen: it is decided " \
               "there, not here"
    by = f" by {decided_by}" if decided_by else ""
    if isinstance(event, DecisionKind) or event in (CaseEvent.TRANSFER, CaseEvent.TRANSFER_OUT):
        final = "" if TRANSITIONS[state] else "; that decision is final"
        return f"this case was already decided ({state.value}){by}{final}"
    return f"this case was already decided ({state.value}){by}: nothing can be added to it"


def case_number(centre: str, day: date, n: int) -> str:
    """The n-th case number of a centre's day (its own local day): ``{centre}-{YYYYMMDD}-{n}``."""
    return f"{centre}-{day:%Y%m%d}-{n:05d}"
