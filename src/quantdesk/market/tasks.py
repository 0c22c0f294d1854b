"""Market data background tasks: the daily sync after the close, and its schedule.

The scheduler (APScheduler, in the server or in its own process) only has to call
`ext.tasks.submit(daily_sync)` on the trigger `daily_trigger(settings)`; the task itself finds
the session that is due and skips it when done, so a late, repeated or holiday run is harmless.
"""

from __future__ import annotations

from typing import Any

from quantdesk.extensions import current_extensions
from quantdesk.market.cache import market_cache
from quantdesk.market.calendar import parse_hhmm
from quantdesk.market.sync import daily_job
from quantdesk.settings import Settings
from quantdesk.tasks import background_task


@background_task
def daily_sync() -> None:
    """Sync every provider's stored symbols for the latest closed session (idempotent)."""
    ext = current_extensions()
    daily_job(ext.db, ext.settings, cache=market_cache(ext))


def daily_trigger(settings: Settings) -> dict[str, Any]:
    """Cron fields for APScheduler's CronTrigger: weekdays at MARKET_SYNC_TIME, exchange time.

    Holidays are weekdays too; the task checks the trading calendar and does nothing on them.
    """
    at = parse_hhmm(settings.MARKET_SYNC_TIME)
    return {
        "day_of_week": "mon-fri",
        "hour": at.hour,
        "minute": at.minute,
        "timezone": settings.MARKET_SYNC_TIMEZONE,
    }
