"""Container health checks: `python -m quantdesk.healthcheck URL | --backends`, 0 if healthy.

An HTTP check (web, or a worker's metrics port) passes on any 2xx answer within the timeout.
`--backends` (scheduler, and any process without a port) connects to the database and, when
configured, to Redis and the Celery broker, with this process's own settings.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

TIMEOUT_SECONDS = 5.0


def check_url(url: str, timeout: float = TIMEOUT_SECONDS) -> str | None:
    """None when `url` answers 2xx, else the reason."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own URL)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}"
    except OSError as exc:
        return f"{url}: {exc}"
    return None if 200 <= status < 300 else f"{url}: HTTP {status}"


def check_backends() -> list[str]:
    """Reasons why the database, Redis or the broker of this process's settings do not answer."""
    import redis
    from sqlalchemy import text

    from quantdesk.db import build_engine
    from quantdesk.settings import load_settings

    settings = load_settings()
    problems: list[str] = []
    engine = build_engine(settings)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error is "unhealthy"
        problems.append(f"database: {exc}")
    finally:
        engine.dispose()
    for name, url in (("redis", settings.REDIS_URL), ("broker", settings.CELERY_BROKER_URL)):
        if url.startswith(("redis://", "rediss://")):
            try:
                redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT_SECONDS).ping()
            except redis.RedisError as exc:
                problems.append(f"{name}: {exc}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m quantdesk.healthcheck URL... | --backends", file=sys.stderr)
        return 2
    problems: list[str] = []
    for arg in args:
        if arg == "--backends":
            problems += check_backends()
        else:
            reason = check_url(arg)
            if reason:
                problems.append(reason)
    for problem in problems:
        print(f"unhealthy: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
