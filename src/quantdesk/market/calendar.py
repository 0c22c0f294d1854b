"""Trading calendars, so the daily sync runs after the close of real sessions only.

The A-share calendar is the SSE's, from the offline copy akshare ships
(`akshare/file_fold/calendar.json`, 1990-12-19 to 2026-12-31), read as a file so akshare itself
is not imported; dates past its end come from the stored bars of the SSE Composite
(`000001.SH`), and beyond both, weekdays stand in. The scheduler (`sync.daily_job`) asks this
module which session is due; the engine can take `TradingCalendar.sessions` as its dates.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import logging
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

CN_CALENDAR_INDEX = "000001.SH"  # the SSE Composite trades on every SSE session


def _akshare_calendar_file() -> Path | None:
    spec = importlib.util.find_spec("akshare")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "file_fold" / "calendar.json"
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def sse_file_days() -> tuple[dt.date, ...]:
    """SSE sessions from akshare's offline calendar; empty when akshare is not installed."""
    path = _akshare_calendar_file()
    if path is None:
        log.warning("akshare's offline calendar is missing: weekdays stand in for SSE sessions")
        return ()
    raw: list[str] = json.loads(path.read_text(encoding="utf-8"))
    return tuple(dt.date(int(s[:4]), int(s[4:6]), int(s[6:8])) for s in raw)


def _weekdays(start: dt.date, end: dt.date) -> list[dt.date]:
    days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
    return [d.item() for d in days[np.is_busday(days)]]


class TradingCalendar:
    """Sessions known from a list of dates; outside the list's range, Monday to Friday."""

    def __init__(self, days: Iterable[dt.date]) -> None:
        unique = sorted(set(days))
        self._days: npt.NDArray[np.datetime64] = np.array(unique, dtype="datetime64[D]")

    @property
    def first(self) -> dt.date | None:
        return self._days[0].item() if self._days.size else None

    @property
    def last(self) -> dt.date | None:
        return self._days[-1].item() if self._days.size else None

    def _known(self, day: dt.date) -> bool:
        return bool(self._days.size) and self._days[0].item() <= day <= self._days[-1].item()

    def is_session(self, day: dt.date) -> bool:
        if self._known(day):
            pos = int(np.searchsorted(self._days, np.datetime64(day, "D")))
            return pos < self._days.size and self._days[pos].item() == day
        return day.weekday() < 5

    def sessions(self, start: dt.date, end: dt.date) -> list[dt.date]:
        """Every session from start to end, both included."""
        if start > end:
            return []
        known = self._days[
            (self._days >= np.datetime64(start, "D")) & (self._days <= np.datetime64(end, "D"))
        ]
        days = [d.item() for d in known]
        if not self._days.size:
            return _weekdays(start, end)
        first, last = self._days[0].item(), self._days[-1].item()
        before = _weekdays(start, min(end, first - dt.timedelta(days=1))) if start < first else []
        after = _weekdays(max(start, last + dt.timedelta(days=1)), end) if end > last else []
        return before + days + after

    def previous(self, day: dt.date) -> dt.date:
        """The last session strictly before `day`."""
        probe = day - dt.timedelta(days=1)
        while not self.is_session(probe):
            probe -= dt.timedelta(days=1)
        return probe

    def next(self, day: dt.date) -> dt.date:
        """The first session strictly after `day`."""
        probe = day + dt.timedelta(days=1)
        while not self.is_session(probe):
            probe += dt.timedelta(days=1)
        return probe


def cn_calendar(extra_days: Iterable[dt.date] = ()) -> TradingCalendar:
    """The SSE calendar: akshare's offline file plus sessions seen in stored index bars."""
    return TradingCalendar([*sse_file_days(), *extra_days])


def parse_hhmm(value: str) -> dt.time:
    hours, minutes = value.split(":")
    return dt.time(int(hours), int(minutes))


def due_session(
    now: dt.datetime, calendar: TradingCalendar, *, at: dt.time, tz: ZoneInfo
) -> dt.date:
    """The latest session whose close has passed by `now`: today after `at`, else the one before.

    `now` must be timezone-aware. A job that runs late (the server was down at 15:30) still
    finds the session it missed; one that runs twice finds the same session and skips it.
    """
    if now.tzinfo is None:
        raise ValueError("due_session needs an aware datetime")
    local = now.astimezone(tz)
    today = local.date()
    if calendar.is_session(today) and local.time() >= at:
        return today
    return calendar.previous(today)


def next_run(
    now: dt.datetime, calendar: TradingCalendar, *, at: dt.time, tz: ZoneInfo
) -> dt.datetime:
    """When the daily sync should next run: `at` on the next session (today's if still ahead)."""
    local = now.astimezone(tz)
    day = local.date()
    if not (calendar.is_session(day) and local.time() < at):
        day = calendar.next(day)
    return dt.datetime.combine(day, at, tzinfo=tz)
