"""Per-user daily limits on AI requests (AI_DAILY_REQUESTS_PER_USER), counted per UTC day.

The counter lives in the rate limiter's storage (in-process in the embedded default, Redis in
production), incremented atomically, so every web worker counts against the same number.
Each accepted AI request counts once: a message (whatever tools it runs), an analysis, advice.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Protocol

from quantdesk.db import utcnow
from quantdesk.errors import TooManyRequests
from quantdesk.settings import Settings


class Counter(Protocol):
    """An atomic counter with expiry: `limits`' storages (Flask-Limiter's `limiter.storage`)."""

    def incr(self, key: str, expiry: int, amount: int = 1) -> int: ...


class DailyLimitReached(TooManyRequests):
    code = "ai_daily_limit"


def take_request(
    counter: Counter, *, settings: Settings, user_id: int, now: dt.datetime | None = None
) -> int | None:
    """Count one AI request of the user today; 429 beyond the limit. Returns the count so far."""
    limit = settings.AI_DAILY_REQUESTS_PER_USER
    if not limit or not settings.RATELIMIT_ENABLED:
        return None
    now = now or utcnow()
    day = now.astimezone(dt.UTC).date()
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    seconds = max(1, math.ceil((midnight - now).total_seconds()))
    used = counter.incr(f"ai-daily:{user_id}:{day.isoformat()}", seconds + 60)
    if used > limit:
        raise DailyLimitReached(
            f"You have used today's {limit} AI requests; the limit resets at 00:00 UTC.",
            retry_after=seconds,
            details={"limit": limit},
        )
    return used
