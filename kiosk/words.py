"""What the kiosk says to the citizen about the queue and closures, in plain Chinese words
(shown and spoken): positions, expected waits, the next opening of a centre."""

from __future__ import annotations

import re
from datetime import date, datetime

WEEKDAYS_ZH = "一二三四五六日"


def wait_words(expected_wait_s: int | None) -> str:
    """"预计等候约 5 分钟" (nothing when the hub gave no estimate)."""
    if expected_wait_s is None:
        return ""
    if expected_wait_s < 60:
        return "预计不到 1 分钟"
    return f"预计等候约 {round(expected_wait_s / 60)} 分钟"


def position_words(position: int | None) -> str:
    """"您前面还有 2 位" / "下一位就是您"."""
    if position is None:
        return "正在排队"
    if position <= 1:
        return "下一位就是您"
    return f"您前面还有 {position - 1} 位"


def queue_sentence(position: int | None, expected_wait_s: int | None) -> str:
    """The waiting screen's sentence, as it is spoken."""
    parts = [position_words(position), wait_words(expected_wait_s)]
    return "，".join(x for x in parts if x) + "。请不要离开，轮到您时会自动接通。"


SPEECH_KEY = re.compile(r"^queue-(\d{1,3})-(\d{1,4})$")


def queue_speech_key(position: int | None, expected_wait_s: int | None) -> str | None:
    """The key under which the touch screen speaks the waiting sentence (position, minutes)."""
    if position is None:
        return None
    minutes = 9999 if expected_wait_s is None else min(round(expected_wait_s / 60), 9998)
    return f"queue-{min(position, 999)}-{minutes}"


def sentence_for_key(key: str) -> str | None:
    """The sentence of a ``queue-P-M`` speech key (M 9999: no estimate)."""
    match = SPEECH_KEY.match(key)
    if match is None:
        return None
    position, minutes = int(match.group(1)), int(match.group(2))
    return queue_sentence(position, None if minutes == 9999 else minutes * 60)


def opening_words(opening: datetime, today: date) -> str:
    """A centre's next opening in words, in the centre's own time: "明天（12月2日，星期三）上午
    8:30". ``opening`` carries its zone (the hub sends the centre's local time)."""
    day = opening.date()
    delta = (day - today).days
    name = {0: "今天", 1: "明天", 2: "后天"}.get(delta)
    when = f"{day.month}月{day.day}日，星期{WEEKDAYS_ZH[day.weekday()]}"
    hour = opening.hour
    part = ("凌晨" if hour < 6 else "上午" if hour < 12 else "中午" if hour < 13
            else "下午" if hour < 18 else "晚上")
    clock = f"{hour if hour <= 12 else hour - 12}:{opening.minute:02d}"
    return f"{name}（{when}）{part}{clock}" if name else f"{when} {part}{clock}"


def closed_words(reason: str, centre_name: str, opening: str | None) -> str:
    """Why remote service is not possible now, and what the citizen can do."""
    if reason == "outside_hours":
        if opening:
            return f"{centre_name}现在不在办公时间。下次可以办理的时间：{opening}。"
        return f"{centre_name}现在不在办公时间，请改天再来。"
    if reason == "no_clerk":
        return f"{centre_name}现在没有工作人员在线，请稍后再试，或到当地政务服务窗口办理。"
    return f"{centre_name}不能远程办理这个事项，请到当地政务服务窗口咨询。"
