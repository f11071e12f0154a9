"""The case's transition table on its own: no database, no server."""

from __future__ import annotations

from datetime import date

import pytest

from remote_desk.transitions import (
    NUMBERED,
    TRANSITIONS,
    CaseEvent,
    CaseState,
    DecisionKind,
    TransitionRefused,
    case_number,
    next_state,
)

S, D, E = CaseState, DecisionKind, CaseEvent


def test_every_state_has_a_row_and_every_target_is_a_state() -> None:
    assert set(TRANSITIONS) == set(CaseState)
    assert all(isinstance(target, CaseState) for row in TRANSITIONS.values()
               for target in row.values())


@pytest.mark.parametrize(("kind", "state"), [
    (D.ACCEPT, S.ACCEPTED), (D.ACCEPT_PENDING, S.ACCEPTED_PENDING),
    (D.CORRECTIONS, S.CORRECTIONS), (D.REFUSE, S.REFUSED)])
def test_a_received_case_takes_each_first_decision(kind: DecisionKind, state: CaseState) -> None:
    assert next_state(S.RECEIVED, kind) is state


def test_only_an_accepted_case_is_completed() -> None:
    assert next_state(S.ACCEPTED, D.COMPLETE) is S.COMPLETED
    assert next_state(S.ACCEPTED_PENDING, D.COMPLETE) is S.COMPLETED
    with pytest.raises(TransitionRefused, match=r"not accepted.*办结"):
        next_state(S.RECEIVED, D.COMPLETE)
    for state in (S.CORRECTIONS, S.REFUSED, S.COMPLETED):
        with pytest.raises(TransitionRefused):
            next_state(state, D.COMPLETE)


@pytest.mark.parametrize("state", [S.REFUSED, S.COMPLETED])
def test_refused_and_completed_are_final(state: CaseState) -> None:
    assert TRANSITIONS[state] == {}
    for event in [*DecisionKind, *CaseEvent]:
        with pytest.raises(TransitionRefused, match="already decided"):
            next_state(state, event)


@pytest.mark.parametrize("state", [S.ACCEPTED, S.ACCEPTED_PENDING, S.CORRECTIONS])
def test_a_decided_case_is_not_decided_again(state: CaseState) -> None:
    for kind in (D.ACCEPT, D.ACCEPT_PENDING, D.CORRECTIONS, D.REFUSE):
        with pytest.raises(TransitionRefused) as refused:
            next_state(state, kind, "clerk-yj")
        assert str(refused.value) == f"this case was already decided ({state.value}) by " \
                                     "clerk-yj"


def test_corrections_go_back_to_received_when_the_kiosk_sends_papers() -> None:
    assert next_state(S.CORRECTIONS, E.SUPPLEMENT) is S.RECEIVED
    assert next_state(S.CORRECTIONS, E.RESUBMIT) is S.RECEIVED
    with pytest.raises(TransitionRefused, match="another package"):
        next_state(S.RECEIVED, E.RESUBMIT)  # nobody asked for a corrected package


def test_papers_and_transfers_only_while_undecided() -> None:
    for event in (E.SUPPLEMENT, E.TRANSFER, E.TRANSFER_IN):
        assert next_state(S.RECEIVED, event) is S.RECEIVED
    for state in (S.ACCEPTED, S.ACCEPTED_PENDING, S.REFUSED, S.COMPLETED):
        for event in (E.SUPPLEMENT, E.RESUBMIT, E.TRANSFER_IN):
            with pytest.raises(TransitionRefused, match="nothing can be added"):
                next_state(state, event)
    with pytest.raises(TransitionRefused, match=r"already decided \(corrections\)"):
        next_state(S.CORRECTIONS, E.TRANSFER)


def test_a_case_that_left_with_its_citizen_is_decided_elsewhere() -> None:
    assert next_state(S.RECEIVED, E.TRANSFER_OUT) is S.TRANSFERRED
    for event in (*DecisionKind, E.SUPPLEMENT, E.RESUBMIT, E.TRANSFER, E.TRANSFER_OUT):
        with pytest.raises(TransitionRefused, match="decided there, not here"):
            next_state(S.TRANSFERRED, event)
    # the hub refused the transfer, or the citizen was sent back with the papers
    assert next_state(S.TRANSFERRED, E.TRANSFER_REFUSED) is S.RECEIVED
    assert next_state(S.TRANSFERRED, E.TRANSFER_IN) is S.RECEIVED
    for state in (S.ACCEPTED, S.CORRECTIONS, S.REFUSED, S.COMPLETED):
        with pytest.raises(TransitionRefused):
            next_state(state, E.TRANSFER_OUT)


def test_decision_kinds_keep_the_pages_strings_and_names() -> None:
    assert [k.value for k in DecisionKind] == ["accept", "accept_pending", "corrections",
                                                "refuse", "complete"]
    assert [k.zh for k in DecisionKind] == ["受理", "容缺受理", "补正", "不予受理", "办结"]
    assert {D.ACCEPT, D.ACCEPT_PENDING} == NUMBERED


def test_case_numbers_keep_their_format() -> None:
    assert case_number("yongjia", date(2026, 11, 26), 7) == "yongjia-20261126-00007"
