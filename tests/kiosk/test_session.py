"""Every state transition and timeout of the citizen's session."""

from __future__ import annotations

from datetime import date

import pytest

from kiosk import events as ev
from kiosk.catalogue import load_catalogue
from kiosk.session import (
    IDLE_TIMEOUTS,
    STILL_THERE_SECONDS,
    Action,
    Session,
    State,
    TransitionError,
)
from signaling import protocol as p

CARD = {"card_type": "resident", "id_number_masked": "320509********001X"}
CASE = "case-0000000001"
WUJIANG = "苏州市吴江区政务服务中心"
YONGJIA = "永嘉县政务服务中心"


def ticket(state: p.TicketState = p.TicketState.WAITING, position: int | None = 2,
           wait: int | None = 480, centre: str = "yongjia",
           reason: p.CloseReason | None = None) -> ev.TicketChanged:
    """A ``ticket.update`` as the hub's model."""
    return ev.TicketChanged(ticket=p.TicketUpdate(
        ticket_id="ticket-0001", case_id=CASE, centre=centre, matter="yb-ydjz-ba",
        state=state, position=position, expected_wait_s=wait, reason=reason))


def call(call_id: str = "call-00001") -> ev.CallStarted:
    return ev.CallStarted(call=p.CallStart(call_id=call_id, ticket_id="ticket-0001",
                                           case_id=CASE, role="offerer", clerk_id="clerk-a",
                                           ice_servers=[]))


def receipt(number: str = "yongjia-20261126-00001") -> ev.ReceiptGiven:
    return ev.ReceiptGiven(receipt=ev.Receipt(case_number=number, kind="accept"))


def _session() -> Session:
    return Session(load_catalogue())


def _to(state: State, by_proxy: bool = True) -> Session:
    """A session walked to ``state`` the way a citizen gets there."""
    s = _session()
    s.handle(ev.Touch(), 1)
    if state is State.CHOOSE_CENTRE:
        return s
    s.handle(ev.ChooseCentre(centre="yongjia"), 2)
    if state is State.CHOOSE_MATTER:
        return s
    s.handle(ev.ChooseMatter(matter="yb-ydjz-ba", by_proxy=by_proxy), 3)
    if state is State.READ_CARD:
        return s
    s.handle(ev.CardRead(card=CARD), 4)
    if state is State.VERIFY_FACE:
        return s
    s.handle(ev.FaceResult(decision="match", liveness=True), 5)
    if state is State.CAPTURE:
        return s
    t = 6.0
    while s.state is State.CAPTURE:
        material = s.context.materials[s.context.index]
        if material.key:
            s.handle(ev.Captured(material=material.code), t)
            s.handle(ev.Done(), t + 1)
        else:
            s.handle(ev.Skip(), t + 1)
        t += 2
    if state is State.REQUEST:
        return s
    s.handle(ticket(), t)
    if state is State.WAITING:
        return s
    s.handle(call(), t + 1)
    if state is State.IN_CALL:
        return s
    s.handle(receipt(), t + 2)
    assert state is State.RESULT
    return s


def test_a_whole_session_from_idle_to_wipe() -> None:
    s = _session()
    assert s.handle(ev.Touch(), 1) == [] and s.state is State.CHOOSE_CENTRE
    assert s.handle(ev.ChooseCentre(centre="yongjia"), 2) == []
    assert s.handle(ev.ChooseMatter(matter="yb-ydjz-ba", by_proxy=True), 3) == [
        Action.START_CARD_READER]
    assert [m.code for m in s.context.materials] == ["id_card", "proxy_letter",
                                                     "agent_id_card", "residence_proof"]
    assert s.handle(ev.CardRead(card=CARD), 4) == [Action.START_FACE_CHECK]
    assert s.handle(ev.FaceResult(decision="review", liveness=True), 5) == [
        Action.START_CAPTURE]
    assert s.screen()["material"] == "参保人身份证" and s.screen()["steps"] == 4
    for i, code in enumerate(["id_card", "proxy_letter", "agent_id_card"]):
        s.handle(ev.Captured(material=code, pages=2 if code.endswith("card") else 1), 6 + i)
        s.handle(ev.Done(), 6.5 + i)
    assert s.handle(ev.Skip(), 10) == [Action.SEND_TICKET]  # residence proof is not a key one
    assert s.state is State.REQUEST and s.context.skipped == ["residence_proof"]
    s.handle(ticket(position=3, wait=900), 11)
    assert s.state is State.WAITING and s.screen()["position"] == 3
    assert s.handle(call(), 12) == [Action.START_CALL, Action.UPLOAD_PACKAGE]
    assert s.handle(receipt("n1"), 13) == [Action.END_CALL, Action.SHOW_RECEIPT]
    assert s.screen()["receipt"] == {"case_number": "n1", "kind": "accept", "text": ""}
    assert s.handle(ev.Finish(), 14) == [Action.WIPE]
    assert s.state is State.IDLE and s.context.card is None and s.context.ticket is None


def test_without_an_agent_the_proxy_materials_are_not_asked_for() -> None:
    s = _to(State.CAPTURE, by_proxy=False)
    assert [m.code for m in s.context.materials] == ["id_card", "residence_proof"]
    with pytest.raises(TransitionError):
        _session().handle(ev.ChooseMatter(matter="gjj-jczm", by_proxy=True), 0)


def test_key_materials_cannot_be_skipped_nor_confirmed_empty() -> None:
    s = _to(State.CAPTURE)
    with pytest.raises(TransitionError, match="key material"):
        s.handle(ev.Skip(), 10)
    with pytest.raises(TransitionError, match="nothing captured"):
        s.handle(ev.Done(), 10)
    s.handle(ev.Captured(material="id_card"), 11)
    assert s.handle(ev.Retake(material="id_card"), 12) == [Action.START_CAPTURE]
    assert "id_card" not in s.context.captured
    s.handle(ev.Captured(material="id_card"), 13)
    assert s.handle(ev.Retake(), 14) == [Action.START_CAPTURE]  # the current material
    assert "id_card" not in s.context.captured


@pytest.mark.parametrize(("state", "back_to"), [
    (State.CHOOSE_CENTRE, State.IDLE), (State.CHOOSE_MATTER, State.CHOOSE_CENTRE),
    (State.READ_CARD, State.CHOOSE_MATTER), (State.VERIFY_FACE, State.READ_CARD),
    (State.CAPTURE, State.VERIFY_FACE),
])
def test_every_step_has_a_way_back(state: State, back_to: State) -> None:
    s = _to(state)
    s.handle(ev.Back(), 50)
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
    assert s.handle(ev.Touch(), s.now + 1) == [] and not s.asking_still_there
    assert s.state is State.READ_CARD
    assert s.tick(s.now + STILL_THERE_SECONDS + 1) == []  # the clock started again


def test_waiting_and_calls_have_no_inactivity_timeout() -> None:
    s = _to(State.WAITING)
    assert s.tick(10_000) == [] and s.state is State.WAITING


def test_card_removed_while_verifying_goes_back_to_the_reader() -> None:
    s = _to(State.VERIFY_FACE)
    assert s.handle(ev.CardRemoved(), 10) == [Action.START_CARD_READER]
    assert s.state is State.READ_CARD and s.context.card is None
    later = _to(State.CAPTURE)
    assert later.handle(ev.CardRemoved(), 10) == [] and later.state is State.CAPTURE


def test_failed_face_check_stays_with_retry_and_back() -> None:
    s = _to(State.VERIFY_FACE)
    assert s.handle(ev.FaceResult(decision="no_match", liveness=True), 10) == []
    assert s.state is State.VERIFY_FACE
    assert s.handle(ev.Retake(), 11) == [Action.START_FACE_CHECK]
    assert s.handle(ev.FaceResult(decision="match", liveness=False), 12) == []
    assert s.state is State.VERIFY_FACE


def test_service_closed_is_shown_with_the_next_opening() -> None:
    s = _to(State.REQUEST)
    s.handle(ev.ServiceClosed(closed=p.ServiceClosed(
        centre="yongjia", matter="yb-ydjz-ba", reason="outside_hours",
        next_opening="2026-11-27T08:30:00+08:00"),
        opening_words="明天（11月27日，星期五）上午8:30"), 20)
    assert s.state is State.CLOSED and s.screen()["next_opening"].startswith("2026-11-27")
    s.handle(ev.Back(), 21)
    assert s.state is State.CHOOSE_MATTER


def test_cancel_while_waiting_cancels_the_ticket_and_wipes() -> None:
    s = _to(State.WAITING)
    assert s.handle(ev.Cancel(), 30) == [Action.CANCEL_TICKET, Action.WIPE]
    in_call = _to(State.IN_CALL)
    assert in_call.handle(ev.Cancel(), 30) == [Action.END_CALL, Action.CANCEL_TICKET, Action.WIPE]


def test_a_clerk_lost_mid_call_puts_the_citizen_back_in_the_queue() -> None:
    s = _to(State.IN_CALL)
    assert s.handle(ev.CallEnded(reason=p.CallEndReason.CLERK_GONE), 30) == [Action.END_CALL]
    assert s.state is State.WAITING
    s.handle(call("call-00002"), 31)
    assert s.state is State.IN_CALL


def test_hub_unreachable_and_back() -> None:
    s = _to(State.WAITING)
    s.handle(ev.HubUnreachable(), 30)
    assert s.state is State.HUB_UNREACHABLE and s.screen()["prompt"] == "网络中断，正在重新连接"
    assert s.handle(ev.HubBack(), 31) == []
    assert s.state is State.WAITING
    r = _to(State.REQUEST)
    r.handle(ev.HubUnreachable(), 30)
    assert r.handle(ev.HubBack(), 31) == [Action.SEND_TICKET]
    limit = IDLE_TIMEOUTS[State.HUB_UNREACHABLE]
    assert limit is not None
    s.handle(ev.HubUnreachable(), 40)
    assert s.tick(40 + limit) == [] and s.asking_still_there
    # nobody came back: the ticket is cancelled (when the hub returns) and the kiosk wiped
    assert s.tick(40 + limit + STILL_THERE_SECONDS) == [Action.CANCEL_TICKET, Action.WIPE]


def test_device_fault_screen_and_way_back() -> None:
    s = _to(State.READ_CARD)
    s.handle(ev.DeviceFault(device="idcard"), 10)
    assert s.state is State.DEVICE_FAULT and s.screen()["prompt"].startswith("设备故障")
    assert s.handle(ev.Back(), 11) == [Action.WIPE]
    assert s.state is State.IDLE


def test_events_out_of_place_are_refused() -> None:
    s = _session()
    with pytest.raises(TransitionError):
        s.handle(ev.CardRead(card=CARD), 1)
    with pytest.raises(ev.EventError):
        ev.from_screen("teleport", {})
    with pytest.raises(ev.EventError, match="not a touch"):
        ev.from_screen("card_read", {"card": CARD})  # devices speak to the session directly
    with pytest.raises(ev.EventError, match="centre"):
        ev.from_screen("choose_centre", {"centre": "../../etc"})
    s.handle(ev.Touch(), 1)
    with pytest.raises(TransitionError):
        s.handle(ev.ChooseCentre(centre="atlantis"), 2)


# -- every ticket state and close reason the protocol defines (the hub's own models) ---------

def test_waiting_shows_and_speaks_position_and_wait_as_the_queue_moves() -> None:
    s = _to(State.REQUEST)
    assert s.handle(ticket(position=3, wait=960), 20) == []
    screen = s.screen()
    assert s.state is State.WAITING and screen["position"] == 3
    assert screen["position_words"] == "您前面还有 2 位"
    assert screen["wait_words"] == "预计等候约 16 分钟" and screen["speak"] == "queue-3-16"
    s.handle(ticket(position=1, wait=240), 21)  # the queue moved
    screen = s.screen()
    assert screen["position_words"] == "下一位就是您" and screen["speak"] == "queue-1-4"


def test_offered_is_still_waiting_but_says_a_clerk_is_coming() -> None:
    s = _to(State.REQUEST)
    s.handle(ticket(p.TicketState.OFFERED, position=1, wait=0), 20)
    screen = s.screen()
    assert s.state is State.WAITING and screen["offered"] is True
    assert screen["position_words"] == "工作人员马上为您接通" and "speak" not in screen


def test_pick_routing_call_starts_from_the_request_step_too() -> None:
    # a pick centre says only "waiting" until a clerk picks; even a call.start that overtakes
    # the first update must not be refused
    s = _to(State.REQUEST)
    assert s.handle(call(), 20) == [Action.START_CALL, Action.UPLOAD_PACKAGE]
    assert s.state is State.IN_CALL and s.context.call is not None


def test_in_call_update_then_call_start() -> None:
    s = _to(State.WAITING)
    assert s.handle(ticket(p.TicketState.IN_CALL, position=None, wait=None), 20) == []
    assert s.handle(call(), 21) == [Action.START_CALL, Action.UPLOAD_PACKAGE]


@pytest.mark.parametrize(("reason", "note"), [
    (p.CallEndReason.DECLINED, "请稍候，您排在最前面"),
    (p.CallEndReason.TRANSFERRED, "正在为您转接，请稍候"),
    (p.CallEndReason.HANGUP, "通话中断了，您排在最前面，请稍候"),
    (p.CallEndReason.FAILED, "通话中断了，您排在最前面，请稍候"),
    (p.CallEndReason.CLERK_GONE, "通话中断了，您排在最前面，请稍候"),
])
def test_a_call_that_ends_without_a_decision_goes_back_to_waiting(
        reason: p.CallEndReason, note: str) -> None:
    s = _to(State.IN_CALL)
    assert s.handle(ev.CallEnded(reason=reason), 30) == [Action.END_CALL]
    screen = s.screen()
    assert s.state is State.WAITING and screen["note"] == note
    assert s.context.call is None
    assert screen["offered"] is False and screen["position_words"] == "正在排队"


def test_a_restarted_call_stays_in_the_call() -> None:
    s = _to(State.IN_CALL)
    assert s.handle(ev.CallEnded(reason=p.CallEndReason.RESTARTED), 30) == [Action.END_CALL]
    assert s.state is State.IN_CALL
    assert s.handle(call("call-00002"), 31) == [Action.START_CALL, Action.UPLOAD_PACKAGE]


def test_the_hub_putting_the_ticket_back_ends_the_call() -> None:
    s = _to(State.IN_CALL)
    assert s.handle(ticket(position=1, wait=0), 30) == [Action.END_CALL]
    assert s.state is State.WAITING


def test_transfer_to_another_centre_follows_with_the_case() -> None:
    s = _to(State.IN_CALL)
    s.handle(ev.CallEnded(reason=p.CallEndReason.TRANSFERRED), 30)
    assert s.handle(ticket(centre="wujiang", position=1, wait=300), 31) == [
        Action.FOLLOW_TRANSFER]
    screen = s.screen()
    assert s.context.centre == "wujiang" and screen["centre_name"] == WUJIANG
    assert screen["note"] == f"已为您转到{WUJIANG}，请稍候" and screen["position"] == 1


def test_closed_transferred_waits_for_the_new_ticket() -> None:
    s = _to(State.WAITING)
    closed = ticket(p.TicketState.CLOSED, None, None, reason=p.CloseReason.TRANSFERRED)
    assert s.handle(closed, 30) == [] and s.state is State.WAITING
    assert s.context.ticket is None and s.screen()["note"] == "正在为您转接，请稍候"


def test_closed_transferred_during_the_call_ends_the_call() -> None:
    s = _to(State.IN_CALL)
    closed = ticket(p.TicketState.CLOSED, None, None, reason=p.CloseReason.TRANSFERRED)
    assert s.handle(closed, 30) == [Action.END_CALL]
    assert s.state is State.WAITING and s.context.call is None


def test_closed_completed_without_a_receipt_ends_the_case() -> None:
    s = _to(State.IN_CALL)
    closed = ticket(p.TicketState.CLOSED, None, None, reason=p.CloseReason.COMPLETED)
    assert s.handle(closed, 30) == [Action.END_CALL, Action.SHOW_RECEIPT]
    assert s.state is State.RESULT and s.screen()["receipt"]["kind"] == "ended"


def test_closed_completed_after_the_receipt_changes_nothing() -> None:
    s = _to(State.RESULT)
    closed = ticket(p.TicketState.CLOSED, None, None, reason=p.CloseReason.COMPLETED)
    assert s.handle(closed, 30) == [] and s.screen()["receipt"]["kind"] == "accept"


def test_closed_cancelled_elsewhere_tells_the_citizen() -> None:
    s = _to(State.WAITING)
    closed = ticket(p.TicketState.CLOSED, None, None, reason=p.CloseReason.CANCELLED)
    assert s.handle(closed, 30) == [Action.END_CALL, Action.SHOW_RECEIPT]
    assert s.state is State.RESULT and "取消" in s.screen()["receipt"]["text"]


def test_closed_because_the_kiosk_was_gone_asks_again() -> None:
    s = _to(State.WAITING)
    closed = ticket(p.TicketState.CLOSED, None, None, reason=p.CloseReason.KIOSK_GONE)
    assert s.handle(closed, 30) == [Action.END_CALL, Action.SEND_TICKET]
    assert s.state is State.REQUEST and "重新排队" in s.screen()["note"]


def test_a_ticket_update_after_the_hub_came_back_resumes_waiting() -> None:
    s = _to(State.WAITING)
    s.handle(ev.HubUnreachable(), 30)
    s.handle(ticket(position=2, wait=600), 31)
    assert s.state is State.WAITING and s.screen()["position"] == 2


@pytest.mark.parametrize(("reason", "words"), [
    ("outside_hours", f"{YONGJIA}现在不在办公时间。下次可以办理的时间："
                      "明天（11月27日，星期五）上午8:30。"),
    ("no_clerk", f"{YONGJIA}现在没有工作人员在线"),
    ("unknown_matter", f"{YONGJIA}不能远程办理这个事项"),
])
def test_service_closed_says_why_in_words(reason: str, words: str) -> None:
    s = _to(State.REQUEST)
    opening = "2026-11-27T08:30:00+08:00" if reason == "outside_hours" else None
    closed = p.ServiceClosed(centre="yongjia", matter="yb-ydjz-ba", reason=reason,
                             next_opening=opening)
    event = ev.from_hub(closed, case_id=CASE, call_id=None,
                        today=date(2026, 11, 26))
    assert event is not None
    s.handle(event, 20)
    assert s.state is State.CLOSED and s.screen()["detail"].startswith(words)


def test_hub_messages_for_another_case_or_call_are_not_the_sessions() -> None:
    other = p.TicketUpdate(ticket_id="ticket-0002", case_id="case-other-01", centre="yongjia",
                           matter="yb-ydjz-ba", state=p.TicketState.WAITING)
    assert ev.from_hub(other, case_id=CASE, call_id=None) is None
    ended = p.CallEnded(call_id="call-old-001", reason=p.CallEndReason.HANGUP)
    assert ev.from_hub(ended, case_id=CASE, call_id="call-00001") is None
    assert ev.from_hub(ended, case_id=CASE, call_id="call-old-001") == ev.CallEnded(
        reason=p.CallEndReason.HANGUP)
