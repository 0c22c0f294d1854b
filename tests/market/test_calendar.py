"""The trading calendar and the daily job's timing: after 15:30 Shanghai on sessions only."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from quantdesk.market.calendar import (
    TradingCalendar,
    cn_calendar,
    due_session,
    next_run,
    sse_file_days,
)

SH = ZoneInfo("Asia/Shanghai")
AT = dt.time(15, 30)


def shanghai(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=SH)


def test_the_offline_sse_calendar() -> None:
    days = sse_file_days()
    assert days[0] == dt.date(1990, 12, 19)
    assert len(days) > 8000
    calendar = cn_calendar()
    assert calendar.is_session(dt.date(2024, 9, 30))
    assert not calendar.is_session(dt.date(2024, 10, 1))  # National Day
    assert not calendar.is_session(dt.date(2024, 2, 12))  # Spring Festival
    assert not calendar.is_session(dt.date(2024, 1, 6))  # a Saturday
    assert calendar.previous(dt.date(2024, 10, 8)) == dt.date(2024, 9, 30)
    assert calendar.next(dt.date(2024, 9, 30)) == dt.date(2024, 10, 8)
    assert len(calendar.sessions(dt.date(2024, 1, 1), dt.date(2024, 12, 31))) == 242


def test_beyond_the_known_days_weekdays_stand_in() -> None:
    calendar = TradingCalendar([dt.date(2024, 1, 2), dt.date(2024, 1, 4)])
    assert not calendar.is_session(dt.date(2024, 1, 3))  # inside the known range, not listed
    assert calendar.is_session(dt.date(2030, 1, 7))  # a Monday after it
    assert not calendar.is_session(dt.date(2030, 1, 5))  # a Saturday
    assert calendar.is_session(dt.date(2023, 12, 29))  # a Friday before it
    assert calendar.sessions(dt.date(2023, 12, 29), dt.date(2024, 1, 5)) == [
        dt.date(2023, 12, 29),
        dt.date(2024, 1, 1),  # before the known range: any weekday
        dt.date(2024, 1, 2),
        dt.date(2024, 1, 4),
        dt.date(2024, 1, 5),
    ]
    extended = cn_calendar([dt.date(2027, 1, 4)])
    assert extended.last == dt.date(2027, 1, 4)


def test_the_due_session_is_today_only_after_the_close() -> None:
    calendar = cn_calendar()
    assert due_session(shanghai(2024, 12, 31, 15, 29), calendar, at=AT, tz=SH) == dt.date(
        2024, 12, 30
    )
    assert due_session(shanghai(2024, 12, 31, 15, 30), calendar, at=AT, tz=SH) == dt.date(
        2024, 12, 31
    )
    assert due_session(shanghai(2024, 10, 3, 16, 0), calendar, at=AT, tz=SH) == dt.date(2024, 9, 30)
    # 08:00 UTC is 16:00 in Shanghai
    utc = dt.datetime(2024, 12, 31, 8, 0, tzinfo=dt.UTC)
    assert due_session(utc, calendar, at=AT, tz=SH) == dt.date(2024, 12, 31)


def test_the_next_run_skips_weekends_and_holidays() -> None:
    calendar = cn_calendar()
    assert next_run(shanghai(2024, 9, 30, 10, 0), calendar, at=AT, tz=SH) == shanghai(
        2024, 9, 30, 15, 30
    )
    assert next_run(shanghai(2024, 9, 30, 16, 0), calendar, at=AT, tz=SH) == shanghai(
        2024, 10, 8, 15, 30
    )
    assert next_run(shanghai(2024, 1, 5, 18, 0), calendar, at=AT, tz=SH) == shanghai(
        2024, 1, 8, 15, 30
    )
