"""The queue and the closures in the citizen's words."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from kiosk.words import (
    opening_words,
    position_words,
    queue_speech_key,
    sentence_for_key,
    wait_words,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(("hour", "minute", "words"), [
    (8, 30, "明天（12月2日，星期三）上午8:30"),
    (12, 0, "明天（12月2日，星期三）中午12:00"),
    (13, 30, "明天（12月2日，星期三）下午1:30"),
    (19, 0, "明天（12月2日，星期三）晚上7:00"),
])
def test_the_next_opening_in_words(hour: int, minute: int, words: str) -> None:
    opening = datetime(2026, 12, 2, hour, minute, tzinfo=SHANGHAI)
    assert opening_words(opening, date(2026, 12, 1)) == words


def test_today_and_later_days() -> None:
    today = date(2026, 12, 4)  # a Friday: the centre opens again on Monday
    assert opening_words(datetime(2026, 12, 4, 13, 30, tzinfo=SHANGHAI), today) == \
        "今天（12月4日，星期五）下午1:30"
    assert opening_words(datetime(2026, 12, 7, 8, 30, tzinfo=SHANGHAI), today) == \
        "12月7日，星期一 上午8:30"


def test_positions_and_waits() -> None:
    assert position_words(1) == "下一位就是您" and position_words(4) == "您前面还有 3 位"
    assert wait_words(30) == "预计不到 1 分钟" and wait_words(610) == "预计等候约 10 分钟"
    assert wait_words(None) == ""


def test_speech_keys_say_the_sentence_shown() -> None:
    key = queue_speech_key(3, 960)
    assert key == "queue-3-16"
    assert sentence_for_key(key) == \
        "您前面还有 2 位，预计等候约 16 分钟。请不要离开，轮到您时会自动接通。"
    assert sentence_for_key(queue_speech_key(2, None) or "") == \
        "您前面还有 1 位。请不要离开，轮到您时会自动接通。"
    assert sentence_for_key("queue-1-1;rm") is None and sentence_for_key("../x") is None
