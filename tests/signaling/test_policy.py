"""The expected wait and the learned service time, without sockets."""

from __future__ import annotations

from signaling.policy import (
    ClerkLoad,
    WaitingTicket,
    expected_waits,
    learn_service_time,
    remaining,
)

SERVICE = {"m1": 600.0, "m2": 300.0}


def _clerk(cid: str, matters: tuple[str, ...] = ("m1", "m2"), *, available: bool = True,
           call_started_at: float | None = None, call_matter: str | None = None) -> ClerkLoad:
    return ClerkLoad(cid, frozenset(matters), available, call_matter, call_started_at)


def test_one_idle_clerk_serves_the_queue_in_order() -> None:
    waiting = [WaitingTicket(f"t{i}", "m1") for i in range(3)]
    assert expected_waits(waiting, [_clerk("a")], SERVICE, now=0) == {
        "t0": 0, "t1": 600, "t2": 1200}


def test_a_call_under_way_counts_with_what_is_left_of_it() -> None:
    busy = _clerk("a", call_started_at=100.0, call_matter="m1")
    assert expected_waits([WaitingTicket("t0", "m1")], [busy], SERVICE, now=500) == {"t0": 200}
    # a call already longer than average is still expected to take a while longer
    late = expected_waits([WaitingTicket("t0", "m1")], [busy], SERVICE, now=2000)
    assert late == {"t0": 180}


def test_with_history_a_long_call_is_given_the_mean_time_left_of_longer_calls() -> None:
    busy = _clerk("a", call_started_at=0.0, call_matter="m1")
    recent = {"m1": [300.0, 500.0, 700.0, 900.0, 1100.0]}
    waits = expected_waits([WaitingTicket("t0", "m1")], [busy], SERVICE, now=600,
                           recent=recent)
    assert waits == {"t0": 300}  # (100 + 300 + 500) / 3
    # too few calls that long: back to the share of the average
    assert remaining(1000.0, 600.0, recent["m1"]) == 180.0


def test_two_clerks_share_the_queue_and_skills_matter() -> None:
    clerks = [_clerk("a", ("m1",)), _clerk("b", ("m1", "m2"))]
    waiting = [WaitingTicket("t0", "m1"), WaitingTicket("t1", "m1"), WaitingTicket("t2", "m2")]
    waits = expected_waits(waiting, clerks, SERVICE, now=0)
    assert waits["t0"] == 0 and waits["t1"] == 0  # both clerks free
    assert waits["t2"] == 600  # only b does m2, after its m1 case


def test_an_offered_ticket_is_taken_now_by_its_clerk() -> None:
    clerks = [_clerk("a")]
    waiting = [WaitingTicket("t0", "m1", offered_to="a"), WaitingTicket("t1", "m2")]
    assert expected_waits(waiting, clerks, SERVICE, now=0) == {"t0": 0, "t1": 600}


def test_clerks_away_do_not_count_and_nobody_serving_still_gives_a_growing_wait() -> None:
    away = _clerk("a", available=False)
    waits = expected_waits([WaitingTicket("t0", "m1"), WaitingTicket("t1", "m1")], [away],
                           SERVICE, now=0)
    assert waits == {"t0": 600, "t1": 1200}


def test_learning_moves_towards_observed_calls_within_bounds() -> None:
    first = learn_service_time(None, 300.0, 600.0)
    assert 300 < first < 600
    assert learn_service_time(first, 300.0, 600.0) < first
    assert learn_service_time(600.0, 1e9, 600.0) <= 600 * 0.8 + 0.2 * 2400 + 1e-9
