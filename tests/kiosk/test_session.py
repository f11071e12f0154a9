"""Every state transition and timeout of the citizen's session."""

from __future__ import annotations

import pytest

from kiosk.catalogue import load_catalogue
from kiosk.session import (
    IDLE_TIMEOUTS,
    STILL_THERE_SECONDS,
    Action,
    Session,
    State,
    TransitionError,
)

CARD = {"card_type": "resident", "id_number_masked": "320509********001X"}


def _session() -> Session:
    return Session(load_catalogue())


def _to(state: State, by_proxy: bool = True) -> Session:
    """A session walked to ``state`` the way a citizen gets there."""
    s = _session()
    s.handle("touch", 1)
    if state is State.CHOOSE_CENTRE:
        return s
    s.handle("choose_centre", 2, centre="yongjia")
    if state is State.CHOOSE_MATTER:
        return s
    s.handle("choose_matter", 3, matter="yb-ydjz-ba", by_proxy=by_proxy)
    if state is State.READ_CARD:
        return s
    s.handle("card_read", 4, card=CARD)
    if state is State.VERIFY_FACE:
        return s
    s.handle("face_result", 5, decision="match", liveness=True)
    if state is State.CAPTURE:
        return s
    t = 6.0
    while s.state is State.CAPTURE:
        material = s.context.materials[s.context.index]
        if material.key:
            s.handle("captured", t, material=material.code)
            s.handle("done", t + 1)
        else:
            s.handle("skip", t + 1)
        t += 2
    if state is State.REQUEST:
        return s
    s.handle("queued", t, ticket={"ticket_id": "t1", "position": 2, "expected_wait_s": 480})
    if state is State.WAITING:
        return s
    s.handle("call_started", t + 1, call={"call_id": "c1"})
    if state is State.IN_CALL:
        return s
    s.handle("receipt", t + 2, receipt={"case_number": "yongjia-20261126-00001"})
    assert state is State.RESULT
    return s


def test_a_whole_session_from_idle_to_wipe() -> None:
    s = _session()
    assert s.handle("touch", 1) == [] and s.state is State.CHOOSE_CENTRE
    assert s.handle("choose_centre", 2, centre="yongjia") == []
    assert s.handle("choose_matter", 3, matter="yb-ydjz-ba", by_proxy=True) == [
        Action.START_CARD_READER]
    assert [m.code for m in s.context.materials] == ["id_card", "proxy_letter",
                                                     "agent_id_card", "residence_proof"]
    assert s.handle("card_read", 4, card=CARD) == [Action.START_FACE_CHECK]
    assert s.handle("face_result", 5, decision="review", liveness=True) == [
        Action.START_CAPTURE]
    assert s.screen()["material"] == "参保人身份证" and s.screen()["steps"] == 4
    for i, code in enumerate(["id_card", "proxy_letter", "agent_id_card"]):
        s.handle("captured", 6 + i, material=code, pages=2 if code.endswith("card") else 1)
        s.handle("done", 6.5 + i)
    assert s.handle("skip", 10) == [Action.SEND_TICKET]  # residence proof is not a key one
    assert s.state is State.REQUEST and s.context.skipped == ["residence_proof"]
    s.handle("queued", 11, ticket={"ticket_id": "t1", "position": 3, "expected_wait_s": 900})
    assert s.screen()["position"] == 3
    assert s.handle("call_started", 12, call={"call_id": "c1"}) == [Action.START_CALL,
                                                                    Action.UPLOAD_PACKAGE]
    assert s.handle("receipt", 13, receipt={"case_number": "n1"}) == [Action.END_CALL,
                                                                      Action.SHOW_RECEIPT]
    assert s.screen()["receipt"] == {"case_number": "n1"}
    assert s.handle("finish", 14) == [Action.WIPE]
    assert s.state is State.IDLE and s.context.card is None and s.context.ticket is None


def test_without_an_agent_the_proxy_materials_are_not_asked_for() -> None:
    s = _to(State.CAPTURE, by_proxy=False)
    assert [m.code for m in s.context.materials] == ["id_card", "residence_proof"]
    with pytest.raises(TransitionError):
        _session().handle("choose_matter", 0, matter="gjj-jczm", by_proxy=True)


def test_key_materials_cannot_be_skipped_nor_confirmed_empty() -> None:
    s = _to(State.CAPTURE)
    with pytest.raises(TransitionError, match="key material"):
        s.handle("skip", 10)
    with pytest.raises(TransitionError, match="nothing captured"):
        s.handle("done", 10)
    s.handle("captured", 11, material="id_card")
    assert s.handle("retake", 12, material="id_card") == [Action.START_CAPTURE]
    assert "id_card" not in s.context.captured
    s.handle("captured", 13, material="id_card")
    assert s.handle("retake", 14) == [Action.START_CAPTURE]  # the current material
    assert "id_card" not in s.context.captured


@pytest.mark.parametrize(("state", "back_to"), [
    (State.CHOOSE_CENTRE, State.IDLE), (State.CHOOSE_MATTER, State.CHOOSE_CENTRE),
    (State.READ_CARD, State.CHOOSE_MATTER), (State.VERIFY_FACE, State.READ_CARD),
    (State.CAPTURE, State.VERIFY_FACE),
])
def test_every_step_has_a_way_back(state: State, back_to: State) -> None:
    s = _to(state)
    s.handle("back", 50)
    assert s.state is back_to


@pytest.mark.parametrize("state", [st for st, limit in IDLE_TIMEOUTS.items()
                                   if limit is not None and st not in (
                                       State.CLOSED, State.DEVICE_FAULT,
                                       State.HUB_UNREACHABLE)])
def test_inactivity_asks_then_wipes(state: State) -> None:
    s = _to(state)
    limit = IDLE_TIMEOUTS[state]
    assert limit is not None
    start = s.last_touch
    assert s.tick(start + limit - 1) == [] and not s.screen()["still_there"]
    assert s.tick(start + limit) == [] and s.screen()["still_there"]
    assert s.screen()["prompt"] == "您还在吗？请点击屏幕继续"
    assert Action.WIPE in s.tick(start + limit + STILL_THERE_SECONDS)
    assert s.state is State.IDLE and s.context.card is None


def test_a_touch_during_the_prompt_keeps_the_session() -> None:
    s = _to(State.READ_CARD)
    limit = IDLE_TIMEOUTS[State.READ_CARD]
    assert limit is not None
    s.tick(s.last_touch + limit)
    assert s.handle("touch", s.now + 1) == [] and not s.asking_still_there
    assert s.state is State.READ_CARD
    assert s.tick(s.now + STILL_THERE_SECONDS + 1) == []  # the clock started again


def test_waiting_and_calls_have_no_inactivity_timeout() -> None:
    s = _to(State.WAITING)
    assert s.tick(10_000) == [] and s.state is State.WAITING


def test_card_removed_while_verifying_goes_back_to_the_reader() -> None:
    s = _to(State.VERIFY_FACE)
    assert s.handle("card_removed", 10) == [Action.START_CARD_READER]
    assert s.state is State.READ_CARD and s.context.card is None
    later = _to(State.CAPTURE)
    assert later.handle("card_removed", 10) == [] and later.state is State.CAPTURE


def test_failed_face_check_stays_with_retry_and_back() -> None:
    s = _to(State.VERIFY_FACE)
    assert s.handle("face_result", 10, decision="no_match", liveness=True) == []
    assert s.state is State.VERIFY_FACE
    assert s.handle("retake", 11) == [Action.START_FACE_CHECK]
    assert s.handle("face_result", 12, decision="match", liveness=False) == []
    assert s.state is State.VERIFY_FACE


def test_service_closed_is_shown_with_the_next_opening() -> None:
    s = _to(State.REQUEST)
    s.handle("service_closed", 20, reason="outside_hours",
             next_opening="2026-11-27T08:30:00+08:00")
    assert s.state is State.CLOSED and s.screen()["next_opening"].startswith("2026-11-27")
    s.handle("back", 21)
    assert s.state is State.CHOOSE_MATTER


def test_cancel_while_waiting_cancels_the_ticket_and_wipes() -> None:
    s = _to(State.WAITING)
    assert s.handle("cancel", 30) == [Action.CANCEL_TICKET, Action.WIPE]
    in_call = _to(State.IN_CALL)
    assert in_call.handle("cancel", 30) == [Action.END_CALL, Action.CANCEL_TICKET, Action.WIPE]


def test_a_clerk_lost_mid_call_puts_the_citizen_back_in_the_queue() -> None:
    s = _to(State.IN_CALL)
    assert s.handle("call_ended", 30, reason="clerk_gone") == [Action.END_CALL]
    assert s.state is State.WAITING
    s.handle("call_started", 31, call={"call_id": "c2"})
    assert s.state is State.IN_CALL


def test_hub_unreachable_and_back() -> None:
    s = _to(State.WAITING)
    s.handle("hub_unreachable", 30)
    assert s.state is State.HUB_UNREACHABLE and s.screen()["prompt"] == "网络中断，正在重新连接"
    assert s.handle("hub_back", 31) == []
    assert s.state is State.WAITING
    r = _to(State.REQUEST)
    r.handle("hub_unreachable", 30)
    assert r.handle("hub_back", 31) == [Action.SEND_TICKET]
    limit = IDLE_TIMEOUTS[State.HUB_UNREACHABLE]
    assert limit is not None
    s.handle("hub_unreachable", 40)
    assert s.tick(40 + limit) == [] and s.asking_still_there
    # nobody came back: the ticket is cancelled (when the hub returns) and the kiosk wiped
    assert s.tick(40 + limit + STILL_THERE_SECONDS) == [Action.CANCEL_TICKET, Action.WIPE]


def test_device_fault_screen_and_way_back() -> None:
    s = _to(State.READ_CARD)
    s.handle("device_fault", 10, device="idcard")
    assert s.state is State.DEVICE_FAULT and s.screen()["prompt"].startswith("设备故障")
    assert s.handle("back", 11) == [Action.WIPE]
    assert s.state is State.IDLE


def test_events_out_of_place_are_refused() -> None:
    s = _session()
    with pytest.raises(TransitionError):
        s.handle("card_read", 1, card=CARD)
    with pytest.raises(TransitionError):
        s.handle("teleport", 1)
    s.handle("touch", 1)
    with pytest.raises(TransitionError):
        s.handle("choose_centre", 2, centre="atlantis")
