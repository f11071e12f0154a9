"""Deadlines in working days on the Chinese calendar (public holidays off, make-up working
days on), for 容缺受理 commitments."""

from __future__ import annotations

from datetime import date, timedelta


def is_working_day(day: date) -> bool:
    try:
        import chinese_calendar

        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:  # a year the package does not cover yet: weekdays
        return day.weekday() < 5


def add_working_days(start: date, days: int) -> date:
    """The date ``days`` working days after ``start`` (the start day itself not counted)."""
    if days < 1:
        raise ValueError("a deadline is at least one working day away")
    current, left = start, days
    while left:
        current += timedelta(days=1)
        if is_working_day(current):
            left -= 1
    return current
