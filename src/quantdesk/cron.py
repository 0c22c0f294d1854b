"""Standard five-field crontab expressions as APScheduler triggers, with crontab's weekday numbers.

APScheduler 3 reads a weekday number as 0 = Monday, crontab as 0 (or 7) = Sunday, so its own
`CronTrigger.from_crontab("30 15 * * 1-5")` fires Tuesday to Saturday (APScheduler issue 286,
fixed only in 4.x). Users write crontab, so the weekday field is translated here into names,
which both read the same way.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

# crontab's numbering: 0 and 7 are Sunday.
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# APScheduler's order of the same names (mon = 0), for a stable, readable translation.
_AP_ORDER = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _day_number(token: str) -> int:
    text = token.strip().lower()
    if text in _DAY_NAMES:
        return _DAY_NAMES.index(text)
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text) % 7
    raise ValueError(f"weekday {token!r} is not 0-7 or a name (sun, mon, ...)")


def _weekdays(field: str) -> str:
    """The crontab weekday field as APScheduler weekday names ("1-5" -> "mon,tue,wed,thu,fri")."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        span, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"weekday step {step_text!r} is not a positive number")
            step = int(step_text)
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            low, high = span.split("-", 1)
            first, last = _day_number(low), _day_number(high)
            if high.strip() == "7":  # "5-7": Friday to Sunday
                last = 7
            if last < first:
                raise ValueError(f"weekday range {span!r} runs backwards")
        else:
            first = last = _day_number(span)
            if slash:  # "1/2": from Monday, every second day
                last = 6
        days.update(day % 7 for day in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(name for name in _AP_ORDER if _DAY_NAMES.index(name) in days)


def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """A trigger for a crontab expression (minute hour day month weekday) in `timezone`.

    Raises ValueError with a message for the user when the expression is not valid crontab or
    never fires (such as 30 February).
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"a schedule has 5 fields (minute hour day month weekday), got {len(fields)}"
        )
    minute, hour, day, month, weekday = fields
    zone = ZoneInfo(timezone)
    try:
        trigger = CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_weekdays(weekday),
            timezone=zone,
        )
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if trigger.get_next_fire_time(None, dt.datetime.now(zone)) is None:
        raise ValueError("the schedule never fires")
    return trigger
